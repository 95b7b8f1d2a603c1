using ILGPU;

namespace MoeGpuStats.Engines;

/// <summary>
/// One layer of a managed model as a <see cref="RoutingStats"/> engine: every read, no record or
/// reset (those go through the model). Each read holds the model's lock (<paramref name="gate"/>),
/// which the model's records hold too, so a read sees whole steps although the model records its
/// layers without their own locks.
/// </summary>
internal sealed class ReadOnlyLayerEngine(RoutingStatsEngine layer, int index, Lock gate) : RoutingStatsEngine(layer.Options)
{
    public override string Name => layer.Name;

    public override int ExpertCount => Read(() => layer.ExpertCount);

    public override RoutingTotals Totals => Read(() => layer.Totals);

    public override CapacityStats Capacity => layer.Capacity;

    public override IReadOnlyList<float> ExpertUtilization => layer.ExpertUtilization;

    public override IReadOnlyList<float> DecayedExpertUtilization => layer.DecayedExpertUtilization;

    public override IReadOnlyList<ulong> ExpertTokenCounts => layer.ExpertTokenCounts;

    public override IReadOnlyList<float> LoadVarianceHistory => layer.LoadVarianceHistory;

    public override void Record(RoutingDecision decision) => throw ReadOnly();

    public override void Record(ArrayView<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override void Record(ReadOnlySpan<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override UtilizationQuery QueryUtilization() => Read(layer.QueryUtilization);

    public override (UtilizationQuery Query, RoutingTotals Totals) QuerySummary() => Read(layer.QuerySummary);

    public override float UtilizationCv() => Read(layer.UtilizationCv);

    public override float VarianceTrend(int window) => Read(() => layer.VarianceTrend(window));

    public override void Reset() => throw ReadOnly();

    public override ManagedRoutingEngine Snapshot() => Read(layer.Snapshot);

    private T Read<T>(Func<T> read)
    {
        lock (gate)
        {
            return read();
        }
    }

    private InvalidOperationException ReadOnly() =>
        new($"Layer {index} of a model is read-only: record it with ModelRoutingStats.RecordStep and reset it with ModelRoutingStats.Reset.");
}
