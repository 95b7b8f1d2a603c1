using ILGPU;
using static System.FormattableString;

namespace MoeGpuStats.Engines;

/// <summary>
/// One layer of a model as a <see cref="RoutingStats"/> engine: every read, no record or reset (those
/// go through the model); <paramref name="throwIfModelDisposed"/> ends every read once the model is disposed.
/// </summary>
/// <remarks>
/// Each read holds <paramref name="gate"/>, the model's lock, and returns a copy: the layer's arrays
/// change in place at every step, and a model is thread-safe, so a read on one thread must see
/// whole steps recorded on another, as a device layer's read (staged under the model's lock) does.
/// </remarks>
internal sealed class ReadOnlyLayerEngine(RoutingStatsEngine layer, int index, Lock gate, Action throwIfModelDisposed) : RoutingStatsEngine(layer.Options)
{
    public override string Name => layer.Name;

    public override string DeviceName => layer.DeviceName;

    public override int ExpertCount => layer.ExpertCount;

    public override RoutingTotals Totals => Read(engine => engine.Totals);

    public override CapacityStats Capacity => Read(engine => engine.Capacity);

    public override IReadOnlyList<float> ExpertUtilization => Read(engine => engine.ExpertUtilization.ToArray());

    public override IReadOnlyList<float> DecayedExpertUtilization => Read(engine => engine.DecayedExpertUtilization.ToArray());

    public override IReadOnlyList<ulong> ExpertTokenCounts => Read(engine => engine.ExpertTokenCounts.ToArray());

    public override IReadOnlyList<float> LoadVarianceHistory => Read(engine => engine.LoadVarianceHistory.ToArray());

    public override void Record(RoutingDecision decision, int experts) => throw ReadOnly();

    public override void Record(ArrayView<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override void Record(ReadOnlySpan<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => throw ReadOnly();

    public override UtilizationQuery QueryUtilization() => Read(engine => engine.QueryUtilization());

    public override (UtilizationQuery Query, RoutingTotals Totals) QuerySummary() => Read(engine => engine.QuerySummary());

    public override float UtilizationCv() => Read(engine => engine.UtilizationCv());

    public override float VarianceTrend(int window) => Read(engine => engine.VarianceTrend(window));

    public override void Reset() => throw ReadOnly();

    public override ManagedRoutingEngine Snapshot() => Read(engine => engine.Snapshot());

    public override void ThrowIfDisposed() => throwIfModelDisposed();

    public override InvalidOperationException RecordRefusal() => ReadOnly();

    public override bool IsReadOnly => true;

    /// <summary>The refusal of a record, reset or latency on layer <paramref name="layer"/>; a disposed model is named first.</summary>
    internal static InvalidOperationException ReadOnly(int layer, Action throwIfModelDisposed)
    {
        throwIfModelDisposed();
        return new(Invariant($"Layer {layer} of a model is read-only: record it with ModelRoutingStats.RecordStep and reset it with ModelRoutingStats.Reset; a model keeps no latencies."));
    }

    private InvalidOperationException ReadOnly() => ReadOnly(index, throwIfModelDisposed);

    /// <summary><paramref name="read"/> of the layer under the model's lock, the model's disposal checked first: no step or reset comes between its parts.</summary>
    private T Read<T>(Func<RoutingStatsEngine, T> read)
    {
        throwIfModelDisposed();
        lock (gate)
        {
            return read(layer);
        }
    }
}
