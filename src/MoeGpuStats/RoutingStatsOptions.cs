namespace MoeGpuStats;

/// <summary>Settings of a <see cref="RoutingStats"/> that the seed hard-codes or lacks.</summary>
public sealed record RoutingStatsOptions
{
    /// <summary>The largest expert count the device engine holds (its per-expert state is allocated once).</summary>
    public const int MaxDeviceExperts = 4096;

    /// <summary>
    /// Experts per batch when recording from top-k ids (ids outside <c>[0, Experts)</c> are counted as
    /// invalid). Null: the expert count of the last recorded <see cref="RoutingDecision"/>.
    /// </summary>
    public int? Experts { get; init; }

    /// <summary>
    /// Token slots each expert has per batch. Null keeps the seed's placeholder of 100 for
    /// <see cref="CapacityStats"/>. When set, recording from top-k ids also derives the dropped count
    /// as <c>min(tokens, sum over experts of max(0, count - capacity))</c>.
    /// </summary>
    public int? ExpertCapacity { get; init; }

    /// <summary>
    /// When set, <see cref="RoutingStats.DecayedExpertUtilization"/> tracks
    /// <c>u = decay * u + (1 - decay) * count / tokens</c> per batch besides the seed's cumulative mean.
    /// Must lie in [0, 1).
    /// </summary>
    public float? UtilizationDecay { get; init; }

    internal int SlotsPerExpert => ExpertCapacity ?? CapacityStats.DefaultSlotsPerExpert;

    internal void Validate()
    {
        if (Experts is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Experts), Experts, "The expert count must be positive.");
        }

        if (ExpertCapacity is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(ExpertCapacity), ExpertCapacity, "The capacity per expert must be positive.");
        }

        if (UtilizationDecay is { } decay && !(decay >= 0f && decay < 1f))
        {
            throw new ArgumentOutOfRangeException(nameof(UtilizationDecay), decay, "The decay must lie in [0, 1).");
        }
    }
}
