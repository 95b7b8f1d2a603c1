using ILGPU;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Device;

/// <summary>
/// One layer of a <see cref="DeviceModelEngine"/> read as a single-layer device state: the same reads, the
/// model's pending step folded first, each its block and what it reads staged and copied back in one wait.
/// </summary>
internal sealed class DeviceLayerEngine(DeviceModelEngine model, int layer) : RoutingStatsEngine(model.Options.LayerOptions)
{
    public override string Name => model.Name;

    public override string DeviceName => model.DeviceName;

    public override int ExpertCount => model.ReadLayerBlock(layer).Experts;

    public override RoutingTotals Totals => DeviceRoutingEngine.TotalsOf(model.ReadLayerBlock(layer));

    public override CapacityStats Capacity => DeviceRoutingEngine.CapacityOf(Options, model.ReadLayerBlock(layer));

    public override IReadOnlyList<float> ExpertUtilization => PerExpert(static views => views.Utilization);

    public override IReadOnlyList<float> DecayedExpertUtilization => Array.ConvertAll(
        PerExpert(views => Options.UtilizationDecay is null ? views.DecayedUtilization.SubView(0, 0) : views.DecayedUtilization),
        static value => (float)value);

    public override IReadOnlyList<ulong> ExpertTokenCounts => PerExpert(static views => views.TokenCounts);

    public override IReadOnlyList<float> LoadVarianceHistory
    {
        get
        {
            var (block, ring) = model.ReadLayer(layer, static views => views.VarianceHistory);
            return DeviceStateReader.Unroll(ring, block);
        }
    }

    public override void Record(RoutingDecision decision, int experts) => throw ReadOnly();

    public override void Record(ArrayView<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override void Record(ReadOnlySpan<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override UtilizationQuery QueryUtilization() => QuerySummary().Query;

    public override (UtilizationQuery Query, RoutingTotals Totals) QuerySummary()
    {
        var (block, result) = model.QueryLayer(layer, 0);
        return (DeviceRoutingEngine.QueryOf(block.Experts, result), DeviceRoutingEngine.TotalsOf(block));
    }

    public override float UtilizationCv() => model.QueryLayer(layer, 0).Result.CoefficientOfVariation;

    public override float VarianceTrend(int window) => model.QueryLayer(layer, window).Result.Trend;

    public override void Reset() => throw ReadOnly();

    public override void ThrowIfDisposed() => model.ThrowIfUnusable();

    public override InvalidOperationException RecordRefusal() => ReadOnly();

    public override bool IsReadOnly => true;

    public override ManagedRoutingEngine Snapshot() =>
        new(Options, model.ReadLayerState(layer));

    /// <summary>A per-expert array of the layer with its block, in one wait: the block's expert count of its values (none before the first step).</summary>
    private T[] PerExpert<T>(Func<Kernels.RoutingStateViews, ArrayView<T>> array)
        where T : unmanaged
    {
        var (block, values) = model.ReadLayer(layer, array);
        return values[..Math.Min(block.Experts, values.Length)];
    }

    private InvalidOperationException ReadOnly() => ReadOnlyLayerEngine.ReadOnly(layer, model.ThrowIfUnusable);
}
