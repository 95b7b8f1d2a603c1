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

    public override object State => _device;

    public override string Name => _device.Accelerator.AcceleratorType.ToString().ToLowerInvariant();

    public override string DeviceName => _device.Accelerator.Name;

    public override void ThrowIfDisposed() => _device.ThrowIfUnusable();

    public override int ExpertCount => _device.ExpertCount;

    public override RoutingTotals Totals => TotalsOf(_device.ReadBlock());

    public override CapacityStats Capacity => CapacityOf(Options, _device.ReadBlock());

    public override IReadOnlyList<float> ExpertUtilization => _device.ReadUtilization(decayed: false);

    public override IReadOnlyList<float> DecayedExpertUtilization => _device.ReadUtilization(decayed: true);

    public override IReadOnlyList<ulong> ExpertTokenCounts => _device.ReadTokenCounts();

    public override IReadOnlyList<float> LoadVarianceHistory => _device.ReadVarianceHistory();

    public override void Record(RoutingDecision decision, int experts) => _device.RecordValidated(decision, experts, "routingDecision");

    public override void Record(ArrayView<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) =>
        _device.RecordValidated(ids, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);

    public override void Record(ReadOnlySpan<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) =>
        _device.RecordValidated(ids, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);

    public override UtilizationQuery QueryUtilization()
    {
        var result = _device.Query(0, out int experts);
        return QueryOf(experts, result);
    }

    public override (UtilizationQuery Query, RoutingTotals Totals) QuerySummary()
    {
        var result = _device.Query(0, out int experts, out var block);
        return (QueryOf(experts, result), TotalsOf(block));
    }

    public override float UtilizationCv() => _device.UtilizationCv();

    public override float VarianceTrend(int window) => _device.RecentLoadVarianceTrend(window);

    public override void Reset() => _device.Reset();

    public override ManagedRoutingEngine Snapshot() => new(Options, _device.ReadState());

    /// <summary>The capacity statistics a state block holds.</summary>
    internal static CapacityStats CapacityOf(RoutingStatsOptions options, RoutingStateBlock block)
    {
        var capacity = new CapacityStats(options.SlotsPerExpert);
        capacity.Restore(block.CapacityAverageUtilization, block.CapacityPeakUtilization, block.CapacityExceededCount, block.TotalCapacity, block.TotalUsed);
        return capacity;
    }

    /// <summary>A query's result for a state of <paramref name="experts"/> experts (none: the empty query).</summary>
    internal static UtilizationQuery QueryOf(int experts, UtilizationQueryResult result) =>
        experts == 0
            ? default
            : new UtilizationQuery(
                experts,
                result.Mean,
                result.Min,
                result.Max,
                result.CoefficientOfVariation,
                result.MostUtilized,
                result.MostUtilization,
                result.LeastUtilized,
                result.LeastUtilization);

    /// <summary>The totals a state block holds.</summary>
    internal static RoutingTotals TotalsOf(RoutingStateBlock block) =>
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
        try
        {
            _device.DisposeFor(nameof(RoutingStats));
        }
        finally
        {
            _owned?.Dispose();
        }
    }
}
