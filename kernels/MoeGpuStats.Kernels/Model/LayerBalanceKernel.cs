using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace MoeGpuStats.Kernels.Model;

/// <summary>One layer's load figures over its experts (or ranks), from which the host derives balancedness, max/mean and CV.</summary>
internal struct LayerLoad
{
    /// <summary>The sum of the loads.</summary>
    public ulong Total;

    /// <summary>The largest load.</summary>
    public ulong Max;

    /// <summary>The smallest load.</summary>
    public ulong Min;

    /// <summary>The sum over loads of <c>(load − mean)²</c>, in index order (f64, products rounded alone).</summary>
    public double SquaredDeviations;

    /// <summary>The last index of the largest load.</summary>
    public int Hottest;

    /// <summary>The first index of the smallest load.</summary>
    public int Coldest;

    /// <summary>Loads of zero.</summary>
    public int Dead;

    /// <summary>
    /// The Gini coefficient's numerator, <c>Σ_i (2i − n − 1) · x_(i)</c> over the loads in ascending
    /// order (i from 1), summed in that order (f64, products rounded alone).
    /// </summary>
    public double GiniSum;

    /// <summary>The sum of the <see cref="LayerBalanceKernel.TopEntries"/> largest loads.</summary>
    public ulong TopLoad;
}

/// <summary>Loads by index: a device view in the kernel, a managed array on the host, the same arithmetic on both.</summary>
internal interface ILoads
{
    /// <summary>The load at <paramref name="index"/>.</summary>
    ulong this[long index] { get; set; }
}

/// <summary>Loads in a device view.</summary>
internal readonly struct ViewLoads(ArrayView<ulong> view) : ILoads
{
    public ulong this[long index]
    {
        get => view[index];
        set => view[index] = value;
    }
}

/// <summary>Loads in a managed array.</summary>
internal readonly struct ArrayLoads(ulong[] values) : ILoads
{
    public ulong this[long index]
    {
        get => values[index];
        set => values[index] = value;
    }
}

/// <summary>
/// Per layer, the loads' total, extremes, deviations, dead entries, Gini sum and top share in
/// sequential passes, so that the device's figures equal the managed engine's to the bit; one thread per layer.
/// </summary>
internal static class LayerBalanceKernel
{
    /// <summary>
    /// The entries whose load <see cref="LayerLoad.TopLoad"/> sums: the hottest tenth of
    /// <paramref name="count"/>, rounded up, so at least one.
    /// </summary>
    public static int TopEntries(int count) => (count + 9) / 10;

    /// <summary>
    /// The figures of <paramref name="count"/> loads from <paramref name="first"/>, ordered in
    /// <paramref name="sorted"/> from <paramref name="sortedFirst"/> (overwritten: a copy of the loads
    /// in ascending order; it may be the loads themselves, which are then left sorted).
    /// </summary>
    public static LayerLoad Measure<TLoads>(TLoads loads, long first, int count, TLoads sorted, long sortedFirst)
        where TLoads : struct, ILoads
    {
        var result = new LayerLoad { Min = ulong.MaxValue };
        for (var i = 0; i < count; i++)
        {
            var load = loads[first + i];
            result.Total += load;
            // Ties: the last largest and the first smallest, as the seed's max_by and min_by pick the
            // most and least utilized expert (RoutingStats.MostUtilizedExpert, LeastUtilizedExpert).
            if (load >= result.Max)
            {
                result.Max = load;
                result.Hottest = i;
            }

            if (load < result.Min)
            {
                result.Min = load;
                result.Coldest = i;
            }

            result.Dead += load == 0 ? 1 : 0;
        }

        var mean = result.Total / (double)count;
        var squares = 0.0;
        for (var i = 0; i < count; i++)
        {
            var deviation = loads[first + i] - mean;
            squares += Mul(deviation, deviation);
        }

        result.SquaredDeviations = squares;
        for (var i = 0; i < count; i++)
        {
            sorted[sortedFirst + i] = loads[first + i];
        }

        HeapSort(sorted, sortedFirst, count);
        var gini = 0.0;
        for (var i = 0; i < count; i++)
        {
            gini += Mul((2.0 * i) + 1 - count, sorted[sortedFirst + i]);
        }

        result.GiniSum = gini;
        for (var i = count - TopEntries(count); i < count; i++)
        {
            result.TopLoad += sorted[sortedFirst + i];
        }

        return result;
    }

    /// <summary>
    /// Sorts <paramref name="count"/> loads from <paramref name="first"/> ascending, in place, in
    /// O(n log n) without recursion or scratch, as one GPU thread can. Equal loads are
    /// indistinguishable, so every engine ends with the same order.
    /// </summary>
    private static void HeapSort<TLoads>(TLoads loads, long first, int count)
        where TLoads : struct, ILoads
    {
        for (var root = (count / 2) - 1; root >= 0; root--)
        {
            SiftDown(loads, first, root, count);
        }

        for (var end = count - 1; end > 0; end--)
        {
            var largest = loads[first];
            loads[first] = loads[first + end];
            loads[first + end] = largest;
            SiftDown(loads, first, 0, end);
        }
    }

    /// <summary>Moves the load at <paramref name="root"/> down the max-heap of the first <paramref name="count"/> loads.</summary>
    private static void SiftDown<TLoads>(TLoads loads, long first, int root, int count)
        where TLoads : struct, ILoads
    {
        var value = loads[first + root];
        var child = (2 * root) + 1;
        while (child < count)
        {
            if (child + 1 < count && loads[first + child + 1] > loads[first + child])
            {
                child++;
            }

            if (loads[first + child] <= value)
            {
                break;
            }

            loads[first + root] = loads[first + child];
            root = child;
            child = (2 * root) + 1;
        }

        loads[first + root] = value;
    }

    /// <summary>
    /// Layer <c>index</c>'s figures into <paramref name="results"/>: over its <paramref name="experts"/>
    /// loads, or with <paramref name="ranks"/> (one rank per expert) over its loads summed per rank.
    /// <paramref name="scratch"/> (<c>[layers, experts]</c>, overwritten) holds the layer's rank loads
    /// and its sorted loads, row <c>index</c> at <c>index × experts</c> or <c>index × rankCount</c>.
    /// </summary>
    internal static void Kernel(Index1D index, ArrayView<ulong> loads, int experts, ArrayView<int> ranks, int rankCount, ArrayView<ulong> scratch, ArrayView<LayerLoad> results)
    {
        if (index >= results.Length)
        {
            return;
        }

        var first = (long)index.X * experts;
        if (ranks.Length == 0)
        {
            results[index] = Measure(new ViewLoads(loads), first, experts, new ViewLoads(scratch), first);
            return;
        }

        var rankFirst = (long)index.X * rankCount;
        for (var r = 0; r < rankCount; r++)
        {
            scratch[rankFirst + r] = 0UL;
        }

        for (var e = 0; e < experts; e++)
        {
            scratch[rankFirst + ranks[e]] += loads[first + e];
        }

        results[index] = Measure(new ViewLoads(scratch), rankFirst, rankCount, new ViewLoads(scratch), rankFirst);
    }

    /// <summary>Loads the kernel on <paramref name="accelerator"/>.</summary>
    public static Action<AcceleratorStream, Index1D, ArrayView<ulong>, int, ArrayView<int>, int, ArrayView<ulong>, ArrayView<LayerLoad>> Create(Accelerator accelerator) =>
        accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<ulong>, int, ArrayView<int>, int, ArrayView<ulong>, ArrayView<LayerLoad>>(Kernel);

    /// <summary><paramref name="a"/> × <paramref name="b"/> rounded before the add, as .NET rounds it (see <see cref="UnfusedMath"/>).</summary>
    private static double Mul(double a, double b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("mul.rn.f64 %0, %1, %2;", out double product, a, b);
            return product;
        }

        return a * b;
    }
}
