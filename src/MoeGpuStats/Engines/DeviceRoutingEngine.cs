using ILGPU;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Engines;

/// <summary>Adapts <see cref="DeviceRoutingStats"/> to the facade; optionally owns the ILGPU context.</summary>
internal sealed class DeviceRoutingEngine : RoutingStatsEngine
{
    private readonly DeviceRoutingStats _device;
    private readonly IDisposable? _owned;

    public DeviceRoutingEngine(DeviceRoutingStats device, IDisposable? owned = null)
        : base(device.Options)
    {
        _device = device;
        _owned = owned;
    }

    public override string Name => _device.Accelerator.AcceleratorType.ToString().ToLowerInvariant();

    public DeviceRoutingStats Device => _device;

    public override int ExpertCount => _device.ExpertCount;

    public override RoutingTotals Totals => TotalsOf(_device.ReadBlock());

    public override CapacityStats Capacity
    {
        get
        {
            var block = _device.ReadBlock();
            var capacity = new CapacityStats(Options.SlotsPerExpert);
            capacity.Restore(block.CapacityAverageUtilization, block.CapacityPeakUtilization, block.CapacityExceededCount, block.TotalCapacity, block.TotalUsed);
            return capacity;
        }
    }

    public override IReadOnlyList<float> ExpertUtilization => _device.ReadUtilization(decayed: false);

    public override IReadOnlyList<float> DecayedExpertUtilization => _device.ReadUtilization(decayed: true);

    public override IReadOnlyList<ulong> ExpertTokenCounts => _device.ReadTokenCounts();

    public override IReadOnlyList<float> LoadVarianceHistory => _device.ReadVarianceHistory();

    public override void Record(RoutingDecision decision) => _device.RecordValidated(decision);

    public override void Record(ArrayView<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) =>
        _device.RecordValidated(ids, experts, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);

    public override void Record(ReadOnlySpan<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) =>
        _device.RecordValidated(ids, experts, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);

    public override UtilizationQuery QueryUtilization() => QueryOf(_device.Query(0));

    public override (UtilizationQuery Query, RoutingTotals Totals) QuerySummary()
    {
        var result = _device.Query(0, out var block);
        return (QueryOf(result), TotalsOf(block));
    }

    public override float UtilizationCv() => _device.UtilizationCv();

    public override float VarianceTrend(int window) => _device.RecentLoadVarianceTrend(window);

    public override void Reset() => _device.Reset();

    public override ManagedRoutingEngine Snapshot() => new(Options, _device.ReadState());

    private UtilizationQuery QueryOf(UtilizationQueryResult result) =>
        _device.ExpertCount == 0
            ? default
            : new UtilizationQuery(
                _device.ExpertCount,
                result.Mean,
                result.Min,
                result.Max,
                result.CoefficientOfVariation,
                result.MostUtilized,
                result.MostUtilization,
                result.LeastUtilized,
                result.LeastUtilization);

    private static RoutingTotals TotalsOf(RoutingStateBlock block) =>
        new(
            block.TotalRoutings,
            block.TotalTokens,
            block.TokensDropped,
            block.InvalidExpertIds,
            block.RoutedSlots,
            block.SlotsDropped,
            block.AverageLoadBalanceLoss,
            block.AverageRouterZLoss,
            block.RoutingEfficiency);

    public override void Dispose()
    {
        _device.Dispose();
        _owned?.Dispose();
    }
}
