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
}

/// <summary>Loads read by index: a device view in the kernel, a managed array on the host, the same arithmetic on both.</summary>
internal interface ILoads
{
    /// <summary>The load at <paramref name="index"/>.</summary>
    ulong this[long index] { get; }
}

/// <summary>Loads in a device view.</summary>
internal readonly struct ViewLoads(ArrayView<ulong> view) : ILoads
{
    public ulong this[long index] => view[index];
}

/// <summary>Loads in a managed array.</summary>
internal readonly struct ArrayLoads(ulong[] values) : ILoads
{
    public ulong this[long index] => values[index];
}

/// <summary>
/// Per layer, the loads' total, extremes, deviations and dead entries in one sequential pass, so
/// that the device's figures equal the managed engine's to the bit; one thread per layer.
/// </summary>
internal static class LayerBalanceKernel
{
    /// <summary>The figures of <paramref name="count"/> loads from <paramref name="first"/>.</summary>
    public static LayerLoad Measure<TLoads>(TLoads loads, long first, int count)
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
        return result;
    }

    /// <summary>
    /// Layer <c>index</c>'s figures into <paramref name="results"/>: over its <paramref name="experts"/>
    /// loads, or with <paramref name="ranks"/> (one rank per expert) over its loads summed per rank in
    /// <paramref name="rankLoads"/> (<c>[layers, rankCount]</c>, overwritten).
    /// </summary>
    internal static void Kernel(Index1D index, ArrayView<ulong> loads, int experts, ArrayView<int> ranks, int rankCount, ArrayView<ulong> rankLoads, ArrayView<LayerLoad> results)
    {
        if (index >= results.Length)
        {
            return;
        }

        var first = (long)index.X * experts;
        if (ranks.Length == 0)
        {
            results[index] = Measure(new ViewLoads(loads), first, experts);
            return;
        }

        var rankFirst = (long)index.X * rankCount;
        for (var r = 0; r < rankCount; r++)
        {
            rankLoads[rankFirst + r] = 0UL;
        }

        for (var e = 0; e < experts; e++)
        {
            rankLoads[rankFirst + ranks[e]] += loads[first + e];
        }

        results[index] = Measure(new ViewLoads(rankLoads), rankFirst, rankCount);
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
