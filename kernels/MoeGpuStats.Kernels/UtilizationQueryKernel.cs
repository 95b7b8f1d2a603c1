using ILGPU;
using ILGPU.Runtime;
using static MoeGpuStats.Kernels.UnfusedMath;
using static System.FormattableString;

namespace MoeGpuStats.Kernels;

/// <summary>What one query launch returns: every utilization figure and one variance trend.</summary>
internal struct UtilizationQueryResult
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
internal delegate void UtilizationQueryLauncher(AcceleratorStream stream, RoutingStateViews state, int trendWindow, ArrayView<UtilizationQueryResult> result);

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
internal static class UtilizationQueryKernel
{
    private const float RustF32Epsilon = 1.1920929E-07f;

    internal static void Kernel(RoutingStateViews state, int trendWindow, ArrayView<UtilizationQueryResult> result)
    {
        var utilization = SharedMemory.Allocate<float>(RoutingStateLayout.MaxExperts);
        var variances = SharedMemory.Allocate<float>(RoutingStateLayout.VarianceWindow);
        var thread = Group.IdxX;
        var groupSize = Group.DimX;
        // Clamped so that a block written by anyone but the record kernel cannot make the staging
        // read or write outside its arrays (the record kernel keeps all three within these bounds).
        var experts = Within(state.State[0].Experts, RoutingStateLayout.MaxExperts);
        var count = Within(state.State[0].VarianceCount, RoutingStateLayout.VarianceWindow);
        var length = trendWindow < count ? trendWindow : count;
        var oldest = Within(state.State[0].VarianceHead, RoutingStateLayout.VarianceWindow - 1) + count - length;

        for (var e = thread; e < experts; e += groupSize)
        {
            utilization[e] = state.Utilization[e];
        }

        for (var i = thread; i < length; i += groupSize)
        {
            variances[i] = state.VarianceHistory[(oldest + i) % RoutingStateLayout.VarianceWindow];
        }

        Group.Barrier();

        // Each role's thread writes only its own fields of the result.
        ref var output = ref result[0];
        if (thread == 0)
        {
            var mean = experts > 0 ? InOrderReduction.Sum(utilization, experts) / experts : 0f;
            var deviations = new SquaredDeviations { Mean = mean };
            // A NaN mean gives a NaN CV, as in the seed. Not !(mean <= 0f): ILGPU 1.5.3's OpenCL C
            // drops the unordered flag of that comparison, and the CV of a NaN mean came out 0.
            var hasCv = experts > 0 && (mean > 0f || float.IsNaN(mean));
            if (hasCv)
            {
                InOrderReduction.Run(utilization, experts, ref deviations);
            }

            output.Mean = mean;
            output.CoefficientOfVariation = hasCv ? MathF.Sqrt(deviations.Total / experts) / mean : 0f;
        }

        if (thread == GroupRoles.FirstThreadOfWarp(1, groupSize))
        {
            WriteExtremes(utilization, experts, ref output);
        }

        if (thread == GroupRoles.FirstThreadOfWarp(2, groupSize))
        {
            output.Trend = count < 2 || length < 2 ? 0f : Trend(variances, length);
        }
    }

    /// <summary><paramref name="value"/> limited to <c>[0, most]</c> (ILGPU 1.5.3 failed to compile <c>Math.Clamp</c> here).</summary>
    private static int Within(int value, int most) => value < 0 ? 0 : value > most ? most : value;

    /// <summary>All zero without experts.</summary>
    private static void WriteExtremes(ArrayView<float> values, int length, ref UtilizationQueryResult output)
    {
        var extremes = default(Extremes);
        if (length > 0)
        {
            extremes = Extremes.From(values[0]);
            InOrderReduction.Run(values, length, ref extremes);
        }

        output.Min = extremes.Min;
        output.Max = extremes.Max;
        output.MostUtilized = extremes.Most;
        output.MostUtilization = extremes.MostValue;
        output.LeastUtilized = extremes.Least;
        output.LeastUtilization = extremes.LeastValue;
    }

    /// <summary>The least-squares slope of the first <paramref name="length"/> staged variances against their index.</summary>
    private static float Trend(ArrayView<float> values, int length)
    {
        var sums = default(TrendSums);
        InOrderReduction.Run(values, length, ref sums);
        float n = length;
        var denominator = Mul(n, sums.X2) - Mul(sums.X, sums.X);
        var magnitude = denominator < 0f ? -denominator : denominator;
        return magnitude < RustF32Epsilon ? 0f : (Mul(n, sums.Xy) - Mul(sums.X, sums.Y)) / denominator;
    }

    /// <summary>Loads the kernel once on <paramref name="accelerator"/> and returns its launcher.</summary>
    /// <remarks>The launcher throws <see cref="ArgumentException"/> for an empty result view or a state without its block or its variance ring.</remarks>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    public static UtilizationQueryLauncher Create(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        var kernel = accelerator.LoadKernel<RoutingStateViews, int, ArrayView<UtilizationQueryResult>>(Kernel);
        var config = new KernelConfig(1, RoutingRecordKernel.GroupSize(accelerator));
        var gate = new LaunchGate(accelerator);
        return (stream, state, trendWindow, result) =>
        {
            if (result.Length < 1 || state.State.Length < 1 || state.VarianceHistory.Length < RoutingStateLayout.VarianceWindow)
            {
                throw new ArgumentException(
                    Invariant($"The query needs a result element, the state block and {RoutingStateLayout.VarianceWindow} variances; it got {result.Length}, {state.State.Length} and {state.VarianceHistory.Length}."),
                    result.Length < 1 ? nameof(result) : nameof(state));
            }

            using var held = gate.Enter();
            kernel(stream, config, state, trendWindow, result);
        };
    }
}
