using ILGPU;
using ILGPU.Runtime;
using static MoeGpuStats.Kernels.UnfusedMath;

namespace MoeGpuStats.Kernels;

/// <summary>What one query launch returns: every utilization figure and one variance trend.</summary>
public struct UtilizationQueryResult
{
    /// <summary>Mean utilization.</summary>
    public float Mean;

    /// <summary>Smallest utilization (NaN skipped).</summary>
    public float Min;

    /// <summary>Largest utilization (NaN skipped).</summary>
    public float Max;

    /// <summary>Coefficient of variation (0 when the mean is not positive).</summary>
    public float CoefficientOfVariation;

    /// <summary>Index of the last maximum.</summary>
    public int MostUtilized;

    /// <summary>Index of the first minimum.</summary>
    public int LeastUtilized;

    /// <summary>Utilization of <see cref="MostUtilized"/>.</summary>
    public float MostUtilization;

    /// <summary>Utilization of <see cref="LeastUtilized"/>.</summary>
    public float LeastUtilization;

    /// <summary>Least-squares slope of the last <c>window</c> load variances.</summary>
    public float Trend;
}

/// <summary>Launches one query over the state into a one-element result view.</summary>
public delegate void UtilizationQueryLauncher(AcceleratorStream stream, RoutingStateViews state, int trendWindow, ArrayView<UtilizationQueryResult> result);

/// <summary>
/// The reductions behind the read queries, in one launch of one thread: at most 4,096 experts and
/// 1,000 variances, summed in the seed's order so the results equal the managed engine's.
/// Queries are rare next to records; exactness is worth more here than parallel speed.
/// </summary>
public static class UtilizationQueryKernel
{
    private const float RustF32Epsilon = 1.1920929E-07f;

    internal static void Kernel(RoutingStateViews state, int trendWindow, ArrayView<UtilizationQueryResult> result)
    {
        var block = state.State[0];
        var experts = block.Experts;
        var output = default(UtilizationQueryResult);
        var utilization = state.Utilization;
        if (experts > 0)
        {
            var sum = 0f;
            var min = float.PositiveInfinity;
            var max = float.NegativeInfinity;
            var most = 0;
            var least = 0;

            // The current extremes stay in registers: reloading utilization[most] made every
            // iteration wait for the previous one's global load.
            var mostValue = utilization[0];
            var leastValue = mostValue;
            for (var e = 0; e < experts; e++)
            {
                var value = utilization[e];
                sum += value;
                min = value < min ? value : min;
                max = value > max ? value : max;
                if (!(mostValue > value))
                {
                    most = e;
                    mostValue = value;
                }

                if (leastValue > value)
                {
                    least = e;
                    leastValue = value;
                }
            }

            var mean = sum / experts;
            var cv = 0f;
            if (mean > 0f)
            {
                var total = 0f;
                for (var e = 0; e < experts; e++)
                {
                    var diff = utilization[e] - mean;
                    total += Mul(diff, diff);
                }

                cv = MathF.Sqrt(total / experts) / mean;
            }

            output.Mean = mean;
            output.Min = min;
            output.Max = max;
            output.CoefficientOfVariation = cv;
            output.MostUtilized = most;
            output.MostUtilization = mostValue;
            output.LeastUtilized = least;
            output.LeastUtilization = leastValue;
        }

        output.Trend = Trend(state.VarianceHistory, block.VarianceHead, block.VarianceCount, trendWindow);
        result[0] = output;
    }

    private static float Trend(ArrayView<float> ring, int head, int count, int window)
    {
        var length = window < count ? window : count;
        if (count < 2 || length < 2)
        {
            return 0f;
        }

        float sumX = 0f, sumY = 0f, sumXy = 0f, sumX2 = 0f;
        var slot = head + count - length;
        for (var i = 0; i < length; i++, slot++)
        {
            var y = ring[slot % RoutingRecordKernel.VarianceWindow];
            float x = i;
            sumX += x;
            sumY += y;
            sumXy += Mul(x, y);
            sumX2 += Mul(x, x);
        }

        float n = length;
        var denominator = Mul(n, sumX2) - Mul(sumX, sumX);
        var magnitude = denominator < 0f ? -denominator : denominator;
        return magnitude < RustF32Epsilon ? 0f : (Mul(n, sumXy) - Mul(sumX, sumY)) / denominator;
    }

    /// <summary>Loads the kernel once on <paramref name="accelerator"/> and returns its launcher.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    public static UtilizationQueryLauncher Create(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        var kernel = accelerator.LoadKernel<RoutingStateViews, int, ArrayView<UtilizationQueryResult>>(Kernel);
        return (stream, state, trendWindow, result) => kernel(stream, new KernelConfig(1, 1), state, trendWindow, result);
    }
}
