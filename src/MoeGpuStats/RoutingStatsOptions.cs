using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>Settings of a <see cref="RoutingStats"/> that the seed hard-codes or lacks.</summary>
public sealed record RoutingStatsOptions
{
    /// <summary>The record's members in the compiler's form, numbers written invariantly (<see cref="RecordText"/>).</summary>
    public override string ToString() => RecordText.Of(this);

    /// <summary>The largest expert count the device engine holds (its per-expert state is allocated once): 4,096.</summary>
    public const int MaxDeviceExperts = Kernels.RoutingStateLayout.MaxExperts;

    /// <summary>
    /// The largest expert count on any engine, options and <see cref="RoutingDecision"/>s alike:
    /// 1,048,576 (2^20, the million experts of PEER, He 2024, "Mixture of A Million Experts"), some
    /// 40 MB of state; beyond it an expert count is a mistake, not a model, and would allocate gigabytes.
    /// </summary>
    public const int MaxExperts = 1 << 20;

    /// <summary>
    /// Experts per batch when recording from top-k ids (ids outside <c>[0, Experts)</c> are counted as
    /// invalid), 1 to <see cref="MaxExperts"/> (<see cref="MaxDeviceExperts"/> on a device engine).
    /// Null: the expert count of the last recorded <see cref="RoutingDecision"/>. A decision records over its own
    /// expert count whatever this says, as the seed's does; and the per-expert lists stay empty until the first
    /// record, as the seed's (a read of index 0 before it is refused: "there is no expert yet").
    /// </summary>
    public int? Experts { get; init; }

    /// <summary>
    /// Token-expert slots each expert has per batch: at least 1, or null for none. Null keeps the seed's placeholder of 100 for
    /// <see cref="CapacityStats"/>. When set, a record of top-k ids drops the slots beyond it,
    /// <c>sum over experts of max(0, count − capacity)</c> (<see cref="RoutingStats.SlotsDropped"/>),
    /// and the capacity statistics count the kept slots, so that 8 tokens sent to all 8 experts with a
    /// capacity of 7 keep 56 of 64 slots: 87.5 % efficiency, 100 % of the capacity used. A capacity factor
    /// <c>cf</c> (GShard's, Switch Transformer's, Megatron-Core's <c>moe_expert_capacity_factor</c>) is
    /// <c>ceil(cf × tokens × k / E)</c> slots, fixed here for batches of <c>tokens</c>: one capacity serves every batch.
    /// </summary>
    public int? ExpertCapacity { get; init; }

    /// <summary>
    /// When set, <see cref="RoutingStats.DecayedExpertUtilization"/> tracks
    /// <c>u = decay * u + (1 - decay) * count / tokens</c> per batch besides the seed's cumulative mean,
    /// from u = 0 (so after one batch it reads <c>(1 - decay) * count / tokens</c>, rising towards the
    /// share over about 1 / (1 - decay) batches, as an exponential moving average without bias correction).
    /// Must lie in [0, 1).
    /// </summary>
    public float? UtilizationDecay { get; init; }

    internal int SlotsPerExpert => ExpertCapacity ?? CapacityStats.DefaultSlotsPerExpert;

    internal void Validate()
    {
        if (Experts is < 1 or > MaxExperts)
        {
            throw OutOfRange.Error(nameof(Experts), Experts, Invariant($"give 1 to {MaxExperts:N0}."));
        }

        if (ExpertCapacity is < 1)
        {
            throw OutOfRange.Error(nameof(ExpertCapacity), ExpertCapacity, "give at least 1 slot per expert, or null for no capacity.");
        }

        if (UtilizationDecay is { } decay && !(decay >= 0f && decay < 1f))
        {
            throw OutOfRange.Error(nameof(UtilizationDecay), decay, "give a decay in [0, 1), or null for none.");
        }
    }
}
