using ILGPU;

namespace MoeGpuStats.Engines;

/// <summary>
/// One layer of a model as a <see cref="RoutingStats"/> engine: every read, no record or reset (those
/// go through the model); <paramref name="throwIfModelDisposed"/> ends every read once the model is disposed.
/// </summary>
internal sealed class ReadOnlyLayerEngine(RoutingStatsEngine layer, int index, Action throwIfModelDisposed) : RoutingStatsEngine(layer.Options)
{
    private RoutingStatsEngine Layer
    {
        get
        {
            throwIfModelDisposed();
            return layer;
        }
    }

    public override string Name => layer.Name;

    public override int ExpertCount => layer.ExpertCount;

    public override RoutingTotals Totals => Layer.Totals;

    public override CapacityStats Capacity => Layer.Capacity;

    public override IReadOnlyList<float> ExpertUtilization => Layer.ExpertUtilization;

    public override IReadOnlyList<float> DecayedExpertUtilization => Layer.DecayedExpertUtilization;

    public override IReadOnlyList<ulong> ExpertTokenCounts => Layer.ExpertTokenCounts;

    public override IReadOnlyList<float> LoadVarianceHistory => Layer.LoadVarianceHistory;

    public override void Record(RoutingDecision decision) => throw ReadOnly();

    public override void Record(ArrayView<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override void Record(ReadOnlySpan<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override UtilizationQuery QueryUtilization() => Layer.QueryUtilization();

    public override (UtilizationQuery Query, RoutingTotals Totals) QuerySummary() => Layer.QuerySummary();

    public override float UtilizationCv() => Layer.UtilizationCv();

    public override float VarianceTrend(int window) => Layer.VarianceTrend(window);

    public override void Reset() => throw ReadOnly();

    public override ManagedRoutingEngine Snapshot() => Layer.Snapshot();

    public override void ThrowIfDisposed() => throwIfModelDisposed();

    public override void ThrowIfReadOnly() => throw ReadOnly();

    /// <summary>The refusal of a record, reset or latency on layer <paramref name="layer"/>; a disposed model is named first.</summary>
    internal static InvalidOperationException ReadOnly(int layer, Action throwIfModelDisposed)
    {
        throwIfModelDisposed();
        return new($"Layer {layer} of a model is read-only: record it with ModelRoutingStats.RecordStep and reset it with ModelRoutingStats.Reset; a model keeps no latencies.");
    }

    private InvalidOperationException ReadOnly() => ReadOnly(index, throwIfModelDisposed);
}
