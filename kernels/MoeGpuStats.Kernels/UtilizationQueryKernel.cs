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
/// The reductions behind the read queries, in one launch of one group: at most 4,096 experts and
/// 1,000 variances, summed in the seed's order so the results equal the managed engine's.
/// </summary>
/// <remarks>
/// The whole group stages the utilization and the trend's variances in shared memory with
/// coalesced loads; then three threads in different warps each run one of the seed's sequential
/// reductions at once (sum and coefficient of variation; extremes; trend), reading shared memory
/// eight values ahead. One thread reading global memory waited for every load in turn: 81.9 µs
/// per <c>UtilizationCv()</c> at 1,024 experts on an H200. The sums stay sequential because a
/// reordered float sum differs in the last bits.
/// </remarks>
public static class UtilizationQueryKernel
{
    private const float RustF32Epsilon = 1.1920929E-07f;

    internal static void Kernel(RoutingStateViews state, int trendWindow, ArrayView<UtilizationQueryResult> result)
    {
        var utilization = SharedMemory.Allocate<float>(RoutingRecordKernel.MaxExperts);
        var variances = SharedMemory.Allocate<float>(RoutingRecordKernel.VarianceWindow);
        var thread = Group.IdxX;
        var groupSize = Group.DimX;
        // Clamped so that a block written by anyone but the record kernel cannot make the staging
        // write outside the shared arrays (the record kernel keeps both within these bounds).
        var experts = Within(state.State[0].Experts, RoutingRecordKernel.MaxExperts);
        var count = Within(state.State[0].VarianceCount, RoutingRecordKernel.VarianceWindow);
        var length = trendWindow < count ? trendWindow : count;
        var oldest = state.State[0].VarianceHead + count - length;

        for (var e = thread; e < experts; e += groupSize)
        {
            utilization[e] = state.Utilization[e];
        }

        for (var i = thread; i < length; i += groupSize)
        {
            variances[i] = state.VarianceHistory[(oldest + i) % RoutingRecordKernel.VarianceWindow];
        }

        Group.Barrier();

        // Each role's thread writes only its own fields of the result.
        ref var output = ref result[0];
        if (thread == 0)
        {
            var mean = experts > 0 ? Sum(utilization, experts) / experts : 0f;
            output.Mean = mean;
            output.CoefficientOfVariation = experts > 0 && !(mean <= 0f)
                ? MathF.Sqrt(SquaredDeviations(utilization, experts, mean) / experts) / mean
                : 0f;
        }

        if (thread == RoleThread(1, groupSize))
        {
            Extremes(utilization, experts, ref output);
        }

        if (thread == RoleThread(2, groupSize))
        {
            output.Trend = count < 2 || length < 2 ? 0f : Trend(variances, length);
        }
    }

    /// <summary><paramref name="value"/> limited to <c>[0, most]</c> (ILGPU 1.5.3 failed to compile <c>Math.Clamp</c> here).</summary>
    private static int Within(int value, int most) => value < 0 ? 0 : value > most ? most : value;

    /// <summary>The first thread of warp <paramref name="role"/>, or the last thread of a smaller group.</summary>
    private static int RoleThread(int role, int groupSize)
    {
        var first = role * Warp.WarpSize;
        return first < groupSize ? first : groupSize - 1;
    }

    /// <summary><c>((v0 + v1) + v2) + ...</c>, with eight loads issued before their adds.</summary>
    private static float Sum(ArrayView<float> values, int length)
    {
        var total = 0f;
        var e = 0;
        for (; e + 8 <= length; e += 8)
        {
            var v0 = values[e];
            var v1 = values[e + 1];
            var v2 = values[e + 2];
            var v3 = values[e + 3];
            var v4 = values[e + 4];
            var v5 = values[e + 5];
            var v6 = values[e + 6];
            var v7 = values[e + 7];
            total += v0;
            total += v1;
            total += v2;
            total += v3;
            total += v4;
            total += v5;
            total += v6;
            total += v7;
        }

        for (; e < length; e++)
        {
            total += values[e];
        }

        return total;
    }

    /// <summary>The in-order sum of <c>(v - mean)²</c>, each square rounded before it is added.</summary>
    private static float SquaredDeviations(ArrayView<float> values, int length, float mean)
    {
        var total = 0f;
        var e = 0;
        for (; e + 8 <= length; e += 8)
        {
            var d0 = values[e] - mean;
            var d1 = values[e + 1] - mean;
            var d2 = values[e + 2] - mean;
            var d3 = values[e + 3] - mean;
            var d4 = values[e + 4] - mean;
            var d5 = values[e + 5] - mean;
            var d6 = values[e + 6] - mean;
            var d7 = values[e + 7] - mean;
            total += Mul(d0, d0);
            total += Mul(d1, d1);
            total += Mul(d2, d2);
            total += Mul(d3, d3);
            total += Mul(d4, d4);
            total += Mul(d5, d5);
            total += Mul(d6, d6);
            total += Mul(d7, d7);
        }

        for (; e < length; e++)
        {
            var diff = values[e] - mean;
            total += Mul(diff, diff);
        }

        return total;
    }

    /// <summary>
    /// Smallest and largest (NaN skipped), the last maximum and the first minimum (a NaN compares
    /// equal), as the managed engine's <c>RoutingMath</c>; all zero without experts.
    /// </summary>
    private static void Extremes(ArrayView<float> values, int length, ref UtilizationQueryResult output)
    {
        if (length == 0)
        {
            output.Min = 0f;
            output.Max = 0f;
            output.MostUtilized = 0;
            output.MostUtilization = 0f;
            output.LeastUtilized = 0;
            output.LeastUtilization = 0f;
            return;
        }

        var min = float.PositiveInfinity;
        var max = float.NegativeInfinity;
        var most = 0;
        var least = 0;
        var mostValue = values[0];
        var leastValue = mostValue;
        var e = 0;
        for (; e + 8 <= length; e += 8)
        {
            var v0 = values[e];
            var v1 = values[e + 1];
            var v2 = values[e + 2];
            var v3 = values[e + 3];
            var v4 = values[e + 4];
            var v5 = values[e + 5];
            var v6 = values[e + 6];
            var v7 = values[e + 7];
            Visit(v0, e, ref min, ref max, ref most, ref mostValue, ref least, ref leastValue);
            Visit(v1, e + 1, ref min, ref max, ref most, ref mostValue, ref least, ref leastValue);
            Visit(v2, e + 2, ref min, ref max, ref most, ref mostValue, ref least, ref leastValue);
            Visit(v3, e + 3, ref min, ref max, ref most, ref mostValue, ref least, ref leastValue);
            Visit(v4, e + 4, ref min, ref max, ref most, ref mostValue, ref least, ref leastValue);
            Visit(v5, e + 5, ref min, ref max, ref most, ref mostValue, ref least, ref leastValue);
            Visit(v6, e + 6, ref min, ref max, ref most, ref mostValue, ref least, ref leastValue);
            Visit(v7, e + 7, ref min, ref max, ref most, ref mostValue, ref least, ref leastValue);
        }

        for (; e < length; e++)
        {
            Visit(values[e], e, ref min, ref max, ref most, ref mostValue, ref least, ref leastValue);
        }

        output.Min = min;
        output.Max = max;
        output.MostUtilized = most;
        output.MostUtilization = mostValue;
        output.LeastUtilized = least;
        output.LeastUtilization = leastValue;
    }

    private static void Visit(float value, int index, ref float min, ref float max, ref int most, ref float mostValue, ref int least, ref float leastValue)
    {
        min = value < min ? value : min;
        max = value > max ? value : max;
        if (!(mostValue > value))
        {
            most = index;
            mostValue = value;
        }

        if (leastValue > value)
        {
            least = index;
            leastValue = value;
        }
    }

    /// <summary>The least-squares slope of the first <paramref name="length"/> staged variances against their index.</summary>
    private static float Trend(ArrayView<float> values, int length)
    {
        float sumX = 0f, sumY = 0f, sumXy = 0f, sumX2 = 0f;
        var i = 0;
        for (; i + 8 <= length; i += 8)
        {
            var y0 = values[i];
            var y1 = values[i + 1];
            var y2 = values[i + 2];
            var y3 = values[i + 3];
            var y4 = values[i + 4];
            var y5 = values[i + 5];
            var y6 = values[i + 6];
            var y7 = values[i + 7];
            Accumulate(i, y0, ref sumX, ref sumY, ref sumXy, ref sumX2);
            Accumulate(i + 1, y1, ref sumX, ref sumY, ref sumXy, ref sumX2);
            Accumulate(i + 2, y2, ref sumX, ref sumY, ref sumXy, ref sumX2);
            Accumulate(i + 3, y3, ref sumX, ref sumY, ref sumXy, ref sumX2);
            Accumulate(i + 4, y4, ref sumX, ref sumY, ref sumXy, ref sumX2);
            Accumulate(i + 5, y5, ref sumX, ref sumY, ref sumXy, ref sumX2);
            Accumulate(i + 6, y6, ref sumX, ref sumY, ref sumXy, ref sumX2);
            Accumulate(i + 7, y7, ref sumX, ref sumY, ref sumXy, ref sumX2);
        }

        for (; i < length; i++)
        {
            Accumulate(i, values[i], ref sumX, ref sumY, ref sumXy, ref sumX2);
        }

        float n = length;
        var denominator = Mul(n, sumX2) - Mul(sumX, sumX);
        var magnitude = denominator < 0f ? -denominator : denominator;
        return magnitude < RustF32Epsilon ? 0f : (Mul(n, sumXy) - Mul(sumX, sumY)) / denominator;
    }

    private static void Accumulate(int index, float y, ref float sumX, ref float sumY, ref float sumXy, ref float sumX2)
    {
        float x = index;
        sumX += x;
        sumY += y;
        sumXy += Mul(x, y);
        sumX2 += Mul(x, x);
    }

    /// <summary>Loads the kernel once on <paramref name="accelerator"/> and returns its launcher.</summary>
    /// <remarks>The launcher throws <see cref="ArgumentException"/> for an empty result view or a state without its block or its variance ring.</remarks>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    public static UtilizationQueryLauncher Create(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        var kernel = accelerator.LoadKernel<RoutingStateViews, int, ArrayView<UtilizationQueryResult>>(Kernel);
        var config = new KernelConfig(1, Math.Min(RoutingRecordKernel.PreferredGroupSize, accelerator.MaxNumThreadsPerGroup));
        return (stream, state, trendWindow, result) =>
        {
            if (result.Length < 1 || state.State.Length < 1 || state.VarianceHistory.Length < RoutingRecordKernel.VarianceWindow)
            {
                throw new ArgumentException(
                    $"The query needs a result element, the state block and {RoutingRecordKernel.VarianceWindow} variances; it got {result.Length}, {state.State.Length} and {state.VarianceHistory.Length}.",
                    result.Length < 1 ? nameof(result) : nameof(state));
            }

            kernel(stream, config, state, trendWindow, result);
        };
    }
}
