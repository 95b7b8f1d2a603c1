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
/// Per layer, the loads' total, extremes, deviations and dead entries in sequential passes (one thread
/// per layer), then the Gini sum and top share from the loads sorted by one group per layer, so that
/// the device's figures equal the managed engine's to the bit.
/// </summary>
internal static class LayerBalanceKernel
{
    /// <summary>
    /// The entries whose load <see cref="LayerLoad.TopLoad"/> sums: the hottest tenth of
    /// <paramref name="count"/>, rounded up, so at least one.
    /// </summary>
    public static int TopEntries(int count) => (count + 9) / 10;

    /// <summary>
    /// The figures of <paramref name="count"/> loads from <paramref name="first"/> that their index order
    /// gives (total, extremes, deviations, dead entries), and a copy of the loads into
    /// <paramref name="copy"/> from <paramref name="copyFirst"/> (it may be the loads themselves), which,
    /// once sorted ascending, <see cref="AddOrderFigures"/> reads for the rest.
    /// </summary>
    public static LayerLoad Measure<TLoads>(TLoads loads, long first, int count, TLoads copy, long copyFirst)
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
            copy[copyFirst + i] = load;
        }

        var mean = result.Total / (double)count;
        var squares = 0.0;
        for (var i = 0; i < count; i++)
        {
            var deviation = loads[first + i] - mean;
            squares += Mul(deviation, deviation);
        }

        result.SquaredDeviations = squares;
        return result;
    }

    /// <summary>
    /// Adds to <paramref name="result"/> the figures of the loads' order: the Gini sum, summed in
    /// ascending order, and the hottest tenth's load, from <paramref name="count"/> loads sorted
    /// ascending at <paramref name="first"/>. Any sort gives the same sorted loads, so the device's
    /// group sort and the managed engine's give the same bits.
    /// </summary>
    public static void AddOrderFigures<TLoads>(ref LayerLoad result, TLoads sorted, long first, int count)
        where TLoads : struct, ILoads
    {
        var gini = 0.0;
        for (var i = 0; i < count; i++)
        {
            gini += Mul((2.0 * i) + 1 - count, sorted[first + i]);
        }

        result.GiniSum = gini;
        result.TopLoad = 0;
        for (var i = count - TopEntries(count); i < count; i++)
        {
            result.TopLoad += sorted[first + i];
        }
    }

    /// <summary>
    /// Layer <c>index</c>'s figures into <paramref name="results"/>: over its <paramref name="experts"/>
    /// loads, or with <paramref name="ranks"/> (one rank per expert) over its loads summed per rank.
    /// <paramref name="scratch"/> (<c>[layers, experts]</c>, overwritten) holds the layer's rank loads
    /// and the copy of its loads that <see cref="SortKernel"/> sorts, row <c>index</c> at
    /// <c>index × experts</c> or <c>index × rankCount</c>.
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

    /// <summary>
    /// Sorts each layer's copy in <paramref name="scratch"/> (row <c>group</c> at <c>group × stride</c>,
    /// <paramref name="count"/> loads) ascending, by one group per layer in shared memory (a bitonic sort
    /// over the next power of two, padded with <see cref="ulong.MaxValue"/>, which sorts last), writes it
    /// back, and adds its order's figures to the layer's result (<see cref="AddOrderFigures"/>, one thread).
    /// </summary>
    internal static void SortKernel(ArrayView<ulong> scratch, int stride, int count, ArrayView<LayerLoad> results)
    {
        var sorted = SharedMemory.Allocate<ulong>(RoutingStateLayout.MaxExperts);
        var first = (long)Grid.IdxX * stride;
        var size = 1;
        while (size < count)
        {
            size <<= 1;
        }

        for (var i = Group.IdxX; i < size; i += Group.DimX)
        {
            sorted[i] = i < count ? scratch[first + i] : ulong.MaxValue;
        }

        Group.Barrier();
        for (var block = 2; block <= size; block <<= 1)
        {
            for (var distance = block >> 1; distance > 0; distance >>= 1)
            {
                for (var i = Group.IdxX; i < size; i += Group.DimX)
                {
                    var partner = i ^ distance;
                    if (partner > i)
                    {
                        var low = sorted[i];
                        var high = sorted[partner];
                        var ascending = (i & block) == 0;
                        if (ascending ? low > high : low < high)
                        {
                            sorted[i] = high;
                            sorted[partner] = low;
                        }
                    }
                }

                Group.Barrier();
            }
        }

        for (var i = Group.IdxX; i < count; i += Group.DimX)
        {
            scratch[first + i] = sorted[i];
        }

        if (Group.IdxX == 0)
        {
            var result = results[Grid.IdxX];
            AddOrderFigures(ref result, new ViewLoads(sorted), 0, count);
            results[Grid.IdxX] = result;
        }
    }

    /// <summary>
    /// Loads both kernels on <paramref name="accelerator"/>: the measure launch (one thread per layer),
    /// then the sort launch (one group per layer), on one stream.
    /// </summary>
    public static Action<AcceleratorStream, int, ArrayView<ulong>, int, ArrayView<int>, int, ArrayView<ulong>, ArrayView<LayerLoad>> Create(Accelerator accelerator)
    {
        var measure = accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<ulong>, int, ArrayView<int>, int, ArrayView<ulong>, ArrayView<LayerLoad>>(Kernel);
        var sort = accelerator.LoadKernel<ArrayView<ulong>, int, int, ArrayView<LayerLoad>>(SortKernel);
        var groupSize = RoutingRecordKernel.GroupSize(accelerator);
        var gate = new LaunchGate(accelerator);
        return (stream, layers, loads, experts, ranks, rankCount, scratch, results) =>
        {
            using var held = gate.Enter();
            measure(stream, layers, loads, experts, ranks, rankCount, scratch, results);
            var entries = ranks.Length == 0 ? experts : rankCount;
            sort(stream, new KernelConfig(layers, groupSize), scratch, entries, entries, results);
        };
    }

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
