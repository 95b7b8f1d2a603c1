using System.Buffers;

namespace MoeGpuStats;

/// <summary>
/// How full the experts' slots were (the seed's <c>CapacityStats</c>). The seed assumes
/// 100 slots per expert per batch; <see cref="SlotsPerExpert"/> keeps that default and takes the
/// real capacity when the caller knows it (<see cref="RoutingStatsOptions.ExpertCapacity"/>).
/// </summary>
public sealed class CapacityStats
{
    /// <summary>The seed's placeholder capacity: slots per expert per batch.</summary>
    public const int DefaultSlotsPerExpert = 100;

    private const float AverageAlpha = 0.1f;

    /// <summary>Creates empty statistics with the seed's 100 slots per expert.</summary>
    public CapacityStats()
        : this(DefaultSlotsPerExpert)
    {
    }

    /// <summary>Creates empty statistics for experts with <paramref name="slotsPerExpert"/> slots per batch.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="slotsPerExpert"/> is not positive.</exception>
    public CapacityStats(int slotsPerExpert)
    {
        if (slotsPerExpert < 1)
        {
            throw OutOfRange.Error(nameof(slotsPerExpert), slotsPerExpert, "give at least 1 slot per expert.");
        }

        SlotsPerExpert = slotsPerExpert;
    }

    /// <summary>Slots each expert has per batch.</summary>
    public int SlotsPerExpert { get; }

    /// <summary>
    /// Exponential average (alpha 0.1) of each batch's used / available slots: a fraction, not a percentage
    /// (1 is full). It exceeds 1 where a batch used more than <see cref="SlotsPerExpert"/> × experts slots:
    /// without <see cref="RoutingStatsOptions.ExpertCapacity"/> (the placeholder of 100 cuts nothing), or for a
    /// <see cref="RoutingDecision"/>, whose counts no capacity cuts.
    /// </summary>
    /// <remarks>
    /// It starts from 0, as the seed's does, so it reads low for the first few dozen batches: after n batches
    /// each full, <c>1 − 0.9^n</c> (0.1, 0.19, 0.27, …, 0.88 after 20). <see cref="OverallUtilization"/> is the
    /// exact share over every batch.
    /// </remarks>
    public float AverageUtilization { get; private set; }

    /// <summary>Largest per-batch used / available slots seen: a fraction like <see cref="AverageUtilization"/>, which can exceed 1.</summary>
    public float PeakUtilization { get; private set; }

    /// <summary>
    /// Batches that dropped at least one slot (<see cref="RoutingStats.SlotsDropped"/> grew): with
    /// <see cref="RoutingStatsOptions.ExpertCapacity"/>, a batch of top-k ids with slots beyond it; otherwise
    /// a batch that reported a dropped token (a batch of ids only when it routed a slot to a valid expert).
    /// <see cref="Update"/> counts a decision with a positive <see cref="RoutingDecision.TokensDropped"/>.
    /// </summary>
    public ulong CapacityExceededCount { get; private set; }

    /// <summary>Slots available over all batches: each adds its experts × <see cref="SlotsPerExpert"/>, up to 2^63 − 1, where the total stops.</summary>
    public ulong TotalCapacity { get; private set; }

    /// <summary>
    /// Slots used over all batches (a record of ids: the slots it kept, routed less dropped; a decision: its counts, as
    /// the seed's), up to 2^63 − 1, where the total stops: decisions of a million experts at 2^31 − 1
    /// slots each reach it in about 4,100 batches.
    /// </summary>
    public ulong TotalUsed { get; private set; }

    /// <summary>Folds one batch in.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="routingDecision"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// The decision has no experts (the seed divides 0 by 0 there), more than <see cref="RoutingStatsOptions.MaxExperts"/>,
    /// a negative count, a negative <c>TotalTokens</c>, <c>TokensDropped</c> outside [0, TotalTokens], or a
    /// non-finite loss, or counts that change while they are read, as <see cref="RoutingStats.RecordRouting(RoutingDecision)"/>.
    /// The statistics are left unchanged.
    /// </exception>
    public void Update(RoutingDecision routingDecision)
    {
        var experts = RoutingDecisionValidator.Validate(routingDecision, nameof(routingDecision));
        var buffer = ArrayPool<int>.Shared.Rent(experts);
        try
        {
            var counts = buffer.AsSpan(0, experts);
            RoutingDecisionValidator.ReadCounts(routingDecision.ExpertCapacities, counts, nameof(routingDecision));
            long used = 0;
            foreach (var count in counts)
            {
                used += count;
            }

            Apply(used, experts, routingDecision.TokensDropped > 0);
        }
        finally
        {
            ArrayPool<int>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Percentage of all available slots that were used (<c>TotalUsed / TotalCapacity × 100</c>; above 100 where
    /// batches used more slots than they had, as <see cref="AverageUtilization"/> says); 0 before the first batch.
    /// Unlike <see cref="AverageUtilization"/> and <see cref="PeakUtilization"/>, a percentage, not a fraction.
    /// </summary>
    public float OverallUtilization() => TotalCapacity > 0 ? (float)TotalUsed / TotalCapacity * 100.0f : 0.0f;

    internal void Apply(long used, int experts, bool dropped)
    {
        var current = used / ((float)experts * SlotsPerExpert);
        var alpha = AverageAlpha;
        AverageUtilization = alpha * current + (1.0f - alpha) * AverageUtilization;
        PeakUtilization = MathF.Max(PeakUtilization, current);
        if (dropped)
        {
            CapacityExceededCount++;
        }

        TotalUsed = Kernels.StoppedCount.Add(TotalUsed, (ulong)used);
        TotalCapacity = Kernels.StoppedCount.Add(TotalCapacity, (ulong)experts * (ulong)SlotsPerExpert);
    }

    /// <summary>A copy that later batches folded into this one do not change.</summary>
    internal CapacityStats Copy()
    {
        var copy = new CapacityStats(SlotsPerExpert);
        copy.Restore(AverageUtilization, PeakUtilization, CapacityExceededCount, TotalCapacity, TotalUsed);
        return copy;
    }

    internal void Restore(float averageUtilization, float peakUtilization, ulong capacityExceededCount, ulong totalCapacity, ulong totalUsed)
    {
        AverageUtilization = averageUtilization;
        PeakUtilization = peakUtilization;
        CapacityExceededCount = capacityExceededCount;
        TotalCapacity = totalCapacity;
        TotalUsed = totalUsed;
    }
}
