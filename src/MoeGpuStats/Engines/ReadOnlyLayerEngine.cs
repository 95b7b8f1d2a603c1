using ILGPU;

namespace MoeGpuStats.Engines;

/// <summary>One layer of a model as a <see cref="RoutingStats"/> engine: every read, no record or reset (those go through the model).</summary>
internal sealed class ReadOnlyLayerEngine(RoutingStatsEngine layer, int index) : RoutingStatsEngine(layer.Options)
{
    public override string Name => layer.Name;

    public override int ExpertCount => layer.ExpertCount;

    public override RoutingTotals Totals => layer.Totals;

    public override CapacityStats Capacity => layer.Capacity;

    public override IReadOnlyList<float> ExpertUtilization => layer.ExpertUtilization;

    public override IReadOnlyList<float> DecayedExpertUtilization => layer.DecayedExpertUtilization;

    public override IReadOnlyList<ulong> ExpertTokenCounts => layer.ExpertTokenCounts;

    public override IReadOnlyList<float> LoadVarianceHistory => layer.LoadVarianceHistory;

    public override void Record(RoutingDecision decision) => throw ReadOnly();

    public override void Record(ArrayView<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override void Record(ReadOnlySpan<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override UtilizationQuery QueryUtilization() => layer.QueryUtilization();

    public override (UtilizationQuery Query, RoutingTotals Totals) QuerySummary() => layer.QuerySummary();

    public override float UtilizationCv() => layer.UtilizationCv();

    public override float VarianceTrend(int window) => layer.VarianceTrend(window);

    public override void Reset() => throw ReadOnly();

    public override ManagedRoutingEngine Snapshot() => layer.Snapshot();

    private InvalidOperationException ReadOnly() =>
        new($"Layer {index} of a model is read-only: record it with ModelRoutingStats.RecordStep and reset it with ModelRoutingStats.Reset.");
}
