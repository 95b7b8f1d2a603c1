using ILGPU;

namespace MoeGpuStats.Engines;

/// <summary>
/// The scalar running totals, read together so a device engine copies them back once.
/// <see cref="RoutedSlots"/> and <see cref="SlotsDropped"/> count token-expert slots for records of
/// top-k ids and tokens for <see cref="RoutingDecision"/> records; the efficiency is their ratio.
/// </summary>
internal readonly record struct RoutingTotals(
    ulong TotalRoutings,
    ulong TotalTokens,
    ulong TokensDropped,
    ulong InvalidExpertIds,
    ulong RoutedSlots,
    ulong SlotsDropped,
    float AverageLoadBalanceLoss,
    float AverageRouterZLoss,
    float RoutingEfficiency);

/// <summary>Everything the utilization queries need, computed in one pass (one launch on a device).</summary>
internal readonly record struct UtilizationQuery(
    int Experts,
    float Mean,
    float Min,
    float Max,
    float CoefficientOfVariation,
    int MostUtilized,
    float MostUtilization,
    int LeastUtilized,
    float LeastUtilization);

/// <summary>
/// Where a <see cref="RoutingStats"/> keeps its routing state: in managed memory or on an ILGPU
/// accelerator. Inputs reach an engine validated; latency stays on the host in the facade.
/// </summary>
internal abstract class RoutingStatsEngine : IDisposable
{
    protected RoutingStatsEngine(RoutingStatsOptions options) => Options = options;

    public RoutingStatsOptions Options { get; }

    /// <summary>
    /// What holds the counts: this engine, or the device statistics it wraps. Statistics over one state (a model's
    /// layer read twice through <c>Layer</c>, one device engine wrapped twice) are one part to a merge.
    /// </summary>
    public virtual object State => this;

    /// <summary>A short name for logs: "managed", "cpu", "cuda", "opencl".</summary>
    public abstract string Name { get; }

    /// <summary>The name of the accelerator that holds the state, or "managed" where managed memory does.</summary>
    public virtual string DeviceName => "managed";

    /// <summary>Folds a decision whose histogram is on the host.</summary>
    public abstract void Record(RoutingDecision decision, int experts);

    /// <summary>
    /// Folds a batch of top-k ids: <paramref name="ids"/> holds at least <c>tokens * topK</c> values. The
    /// expert count (<see cref="RecordChecks.ResolveExperts"/>) is read under the engine's lock, so a decision
    /// or reset on another thread comes wholly before or after the record.
    /// </summary>
    /// <exception cref="InvalidOperationException">No expert count is known.</exception>
    public abstract void Record(ArrayView<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss);

    /// <summary>Folds a batch of top-k ids already on the host.</summary>
    public abstract void Record(ReadOnlySpan<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss);

    /// <summary>The expert count of the current state (0 before the first record).</summary>
    public abstract int ExpertCount { get; }

    public abstract RoutingTotals Totals { get; }

    /// <summary>The capacity statistics as a copy of one moment's: the caller may fold batches into it (its public Update) without reaching the engine.</summary>
    public abstract CapacityStats Capacity { get; }

    public abstract IReadOnlyList<float> ExpertUtilization { get; }

    public abstract IReadOnlyList<float> DecayedExpertUtilization { get; }

    public abstract IReadOnlyList<ulong> ExpertTokenCounts { get; }

    public abstract IReadOnlyList<float> LoadVarianceHistory { get; }

    public abstract UtilizationQuery QueryUtilization();

    /// <summary>The utilization query and the totals together (one query launch on a device).</summary>
    public virtual (UtilizationQuery Query, RoutingTotals Totals) QuerySummary() => (QueryUtilization(), Totals);

    public abstract float UtilizationCv();

    public abstract float VarianceTrend(int window);

    public abstract void Reset();

    /// <summary>A managed copy of the whole state.</summary>
    public abstract ManagedRoutingEngine Snapshot();

    /// <summary>Throws where the state is gone though the facade is not: a model's layer whose model was disposed.</summary>
    public virtual void ThrowIfDisposed()
    {
    }

    /// <summary>
    /// The refusal of a record (latencies included) where the facade may not record: a model's layer, which records
    /// through its model and keeps no latencies; null where it may.
    /// </summary>
    public virtual InvalidOperationException? RecordRefusal() => null;

    /// <summary>Whether the facade may not record (a model's layer); the cheap test where <see cref="RecordRefusal"/>'s message is not needed.</summary>
    public virtual bool IsReadOnly => false;

    public virtual void Dispose()
    {
    }
}
