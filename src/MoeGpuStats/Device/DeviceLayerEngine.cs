using ILGPU;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Device;

/// <summary>One layer of a <see cref="DeviceModelEngine"/> read as a single-layer device state: the same reads, the model's pending step folded first.</summary>
internal sealed class DeviceLayerEngine(DeviceModelEngine model, int layer) : RoutingStatsEngine(model.Options.LayerOptions)
{
    public override string Name => model.Name;

    public override string DeviceName => model.DeviceName;

    public override int ExpertCount => model.ReadLayer(layer, static (_, _, block) => block.Experts);

    public override RoutingTotals Totals => DeviceRoutingEngine.TotalsOf(model.ReadLayer(layer, static (_, _, block) => block));

    public override CapacityStats Capacity => DeviceRoutingEngine.CapacityOf(Options, model.ReadLayer(layer, static (_, _, block) => block));

    public override IReadOnlyList<float> ExpertUtilization => model.ReadLayer(layer, (reader, views, block) => reader.ReadUtilization(views, block.Experts, Options, decayed: false));

    public override IReadOnlyList<float> DecayedExpertUtilization => model.ReadLayer(layer, (reader, views, block) => reader.ReadUtilization(views, block.Experts, Options, decayed: true));

    public override IReadOnlyList<ulong> ExpertTokenCounts => model.ReadLayer(layer, static (reader, views, block) => reader.ReadTokenCounts(views, block.Experts));

    public override IReadOnlyList<float> LoadVarianceHistory => model.ReadLayer(layer, static (reader, views, _) => reader.ReadVarianceHistory(views));

    public override void Record(RoutingDecision decision) => throw ReadOnly();

    public override void Record(ArrayView<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override void Record(ReadOnlySpan<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override UtilizationQuery QueryUtilization() => model.LayerSummary(layer, withTotals: false).Query;

    public override (UtilizationQuery Query, RoutingTotals Totals) QuerySummary() => model.LayerSummary(layer, withTotals: true);

    public override float UtilizationCv() => model.QueryLayer(layer, 0).CoefficientOfVariation;

    public override float VarianceTrend(int window) => model.QueryLayer(layer, window).Trend;

    public override void Reset() => throw ReadOnly();

    public override void ThrowIfDisposed() => model.ThrowIfUnusable();

    public override void ThrowIfReadOnly() => throw ReadOnly();

    public override ManagedRoutingEngine Snapshot() =>
        new(Options, model.ReadLayerState(layer));

    private InvalidOperationException ReadOnly() => ReadOnlyLayerEngine.ReadOnly(layer, model.ThrowIfUnusable);
}
