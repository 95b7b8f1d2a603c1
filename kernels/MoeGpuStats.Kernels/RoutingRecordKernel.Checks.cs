using static MoeGpuStats.Kernels.RoutingStateLayout;
using static System.FormattableString;

namespace MoeGpuStats.Kernels;

/// <summary>The record launcher's checks of its arguments.</summary>
internal static partial class RoutingRecordKernel
{
    /// <summary>
    /// The launcher's checks, on the host and without allocating: a buffer the state does not have or an
    /// expert count beyond its arrays would make the kernel write outside them.
    /// </summary>
    private static void CheckLaunch(RoutingStateViews state, RecordArguments record, string name)
    {
        if (record.Buffer is < -1 or >= BatchBuffers)
        {
            throw new ArgumentOutOfRangeException(name, Invariant($"{name}.Buffer is {record.Buffer}; give -1 (no record) or a batch buffer, 0 to {BatchBuffers - 1}."));
        }

        if (record.Buffer >= 0 && record.Experts is < 1 or > MaxExperts)
        {
            throw new ArgumentOutOfRangeException(name, Invariant($"{name}.Experts is {record.Experts}; give 1 to {MaxExperts}."));
        }

        if (record.Buffer >= 0 && (record.TopK < 0 || record.Tokens < 0))
        {
            throw new ArgumentOutOfRangeException(name, Invariant($"{name}.TopK is {record.TopK} and {name}.Tokens {record.Tokens}; neither can be negative."));
        }

        if (record.Buffer >= 0
            && (state.State.Length < 1 || state.BatchHistogram.Length < BatchHistogramLength || state.BatchInvalid.Length < BatchBuffers
                || state.BatchPaddedTokens.Length < BatchBuffers || state.UtilizationSums.Length < record.Experts
                || state.TokenCounts.Length < record.Experts || state.Utilization.Length < record.Experts
                || state.DecayedUtilization.Length < record.Experts || state.VarianceHistory.Length < VarianceWindow))
        {
            throw new ArgumentException(
                Invariant($"The state's views are too short for {record.Experts} experts: one block, {BatchBuffers} × {BufferLength} batch counts, {BatchBuffers} invalid and padded-token counts, E of each per-expert array, {VarianceWindow} variances."),
                nameof(state));
        }
    }
}
