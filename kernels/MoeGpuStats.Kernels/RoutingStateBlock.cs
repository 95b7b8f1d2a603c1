using ILGPU;

using System.Runtime.InteropServices;

namespace MoeGpuStats.Kernels;

/// <summary>
/// The scalar part of the routing state as it lies in device memory (one element).
/// Field meanings follow the seed's <c>RoutingStats</c> and <c>CapacityStats</c>.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RoutingStateBlock
{
    /// <summary>Batches folded in.</summary>
    public ulong TotalRoutings;

    /// <summary>Tokens over all batches.</summary>
    public ulong TotalTokens;

    /// <summary>Dropped tokens as callers reported them; a capacity drops slots (<see cref="SlotsDropped"/>), not tokens.</summary>
    public ulong TokensDropped;

    /// <summary>Top-k ids outside <c>[0, E)</c> over all batches.</summary>
    public ulong InvalidExpertIds;

    /// <summary>
    /// Routed units over all batches: token-expert slots to a valid expert for top-k ids, tokens for
    /// a histogram the caller counted (the seed's unit). The denominator of <see cref="RoutingEfficiency"/>.
    /// </summary>
    public ulong RoutedSlots;

    /// <summary>Dropped units over all batches, in <see cref="RoutedSlots"/>' units.</summary>
    public ulong SlotsDropped;

    /// <summary>The sum of every batch's load-balancing loss (f64, so the mean does not stall).</summary>
    public double LoadBalanceLossSum;

    /// <summary>The sum of every batch's router z-loss.</summary>
    public double RouterZLossSum;

    /// <summary>Mean of the load-balancing loss, <see cref="LoadBalanceLossSum"/> / <see cref="TotalRoutings"/> as f32.</summary>
    public float AverageLoadBalanceLoss;

    /// <summary>Mean of the router z-loss.</summary>
    public float AverageRouterZLoss;

    /// <summary>Percentage of routed units not dropped: (<see cref="RoutedSlots"/> − <see cref="SlotsDropped"/>) / <see cref="RoutedSlots"/>.</summary>
    public float RoutingEfficiency;

    /// <summary>Exponential average (alpha 0.1) of per-batch slot utilization.</summary>
    public float CapacityAverageUtilization;

    /// <summary>Largest per-batch slot utilization.</summary>
    public float CapacityPeakUtilization;

    /// <summary>Expert count of the per-expert state (0 before the first batch).</summary>
    public int Experts;

    /// <summary>Batches that dropped at least one slot (a token, for a histogram the caller counted).</summary>
    public ulong CapacityExceededCount;

    /// <summary>Slots available over all batches.</summary>
    public ulong TotalCapacity;

    /// <summary>Slots used over all batches.</summary>
    public ulong TotalUsed;

    /// <summary>Entries in the variance ring (at most its length).</summary>
    public int VarianceCount;

    /// <summary>Ring position of the oldest variance.</summary>
    public int VarianceHead;
}

/// <summary>The device buffers one routing state consists of, passed to every kernel as one argument.</summary>
internal struct RoutingStateViews
{
    /// <summary>The scalars (one element).</summary>
    public ArrayView<RoutingStateBlock> State;

    /// <summary>
    /// Two batch buffers of <see cref="RoutingStateLayout.BufferLength"/> counts each (buffer 0, then
    /// buffer 1): a record is counted into one while the record before it is folded from the other,
    /// which the fold leaves zero. A buffer holds <see cref="RecordArguments.Copies"/> histograms of E
    /// counts one after another (<see cref="RoutingStateLayout"/>).
    /// </summary>
    public ArrayView<ulong> BatchHistogram;

    /// <summary>The invalid id count of each batch buffer (two elements); zero once folded.</summary>
    public ArrayView<ulong> BatchInvalid;

    /// <summary>The padded tokens (all k ids −1) of each batch buffer (two elements); zero once folded.</summary>
    public ArrayView<ulong> BatchPaddedTokens;

    /// <summary>Per expert, the f64 sum over batches of <c>count / tokens</c>: <see cref="Utilization"/> is it over the batches.</summary>
    public ArrayView<double> UtilizationSums;

    /// <summary>Token-expert slots per expert over all batches.</summary>
    public ArrayView<ulong> TokenCounts;

    /// <summary>The seed's cumulative-mean utilization per expert, as f32 (the queries read it).</summary>
    public ArrayView<float> Utilization;

    /// <summary>
    /// Exponentially decayed utilization per expert, in f64: in f32 an average decayed by d stops moving once
    /// (1 − d) × share is under half a unit in its last place, far below the share where d is near 1.
    /// </summary>
    public ArrayView<double> DecayedUtilization;

    /// <summary>Ring of per-batch load variances, by ring position.</summary>
    public ArrayView<float> VarianceHistory;
}

/// <summary>The host-known scalars of one record, passed by value as a kernel argument.</summary>
internal struct RecordArguments
{
    /// <summary>Experts in this batch.</summary>
    public int Experts;

    /// <summary>Tokens in this batch, padded tokens included (the fold subtracts those the counting found).</summary>
    public int Tokens;

    /// <summary>Experts per token for a record of top-k ids (its ids' padded tokens are found by it); 0 for a histogram the caller counted.</summary>
    public int TopK;

    /// <summary>Dropped tokens given by the caller (0 when <see cref="ExpertCapacity"/> derives dropped slots).</summary>
    public int TokensDropped;

    /// <summary>Slots per expert; when positive, drops are derived from the histogram.</summary>
    public int ExpertCapacity;

    /// <summary>Slots per expert for the capacity statistics (the seed's 100 by default).</summary>
    public int SlotsPerExpert;

    /// <summary>Load-balancing loss of the batch.</summary>
    public float LoadBalanceLoss;

    /// <summary>Router z-loss of the batch.</summary>
    public float RouterZLoss;

    /// <summary>Decay of the decayed utilization; negative when it is off.</summary>
    public float UtilizationDecay;

    /// <summary>The batch buffer (0 or 1) the record is counted into and folded from; −1 for no record.</summary>
    public int Buffer;

    /// <summary>
    /// The copies of the buffer's histogram the record's counting groups add into (group g into copy
    /// g mod <see cref="Copies"/>, each <see cref="Experts"/> counts long), which the fold sums: 1 to
    /// <see cref="RoutingStateLayout.CopiesHeld"/> at <see cref="Experts"/>. The launcher sets it for the record it counts and returns it.
    /// </summary>
    public int Copies;

    /// <summary>
    /// The index of the first id on a 16-byte boundary, 0 to 3 (at most the ids' length), where
    /// <see cref="HistogramCounting.QuadLoadRuns"/>' 128-bit loads begin. The launcher sets it from
    /// the view's address (on OpenCL, its offset into its buffer).
    /// </summary>
    public int AlignedStart;
}
