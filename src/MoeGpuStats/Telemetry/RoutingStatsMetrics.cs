using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace MoeGpuStats.Telemetry;

/// <summary>
/// Publishes a <see cref="RoutingStats"/> through <c>System.Diagnostics.Metrics</c> (meter
/// <see cref="MeterName"/>), so OpenTelemetry, <c>dotnet-counters</c> and Prometheus exporters see it.
/// </summary>
/// <remarks>
/// Observable instruments read one cached snapshot: a collection that reads every instrument costs
/// at most one device synchronization, and a new snapshot is taken only when the cached one is
/// older than <c>refreshInterval</c>. Latency is recorded into the histogram as it is measured.
/// Instruments carry a <c>layer</c> tag when a layer name is given.
/// </remarks>
public sealed class RoutingStatsMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "MoeGpuStats";

    private readonly RoutingStats _stats;
    private readonly Meter _meter;
    private readonly KeyValuePair<string, object?>[] _tags;
    private readonly Histogram<double> _latency;
    private readonly TimeSpan _refreshInterval;
    private readonly Lock _lock = new();
    private RoutingStats? _snapshot;
    private long _snapshotTimestamp;

    /// <summary>Creates the instruments for <paramref name="stats"/>.</summary>
    /// <param name="stats">The statistics to publish; the caller keeps ownership.</param>
    /// <param name="layer">The MoE layer these statistics belong to, as the <c>layer</c> tag; null for none.</param>
    /// <param name="refreshInterval">How old a snapshot may be before a collection takes a new one; default 1 s.</param>
    /// <param name="meterFactory">The host's meter factory; null creates the meter directly.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stats"/> is null.</exception>
    public RoutingStatsMetrics(RoutingStats stats, string? layer = null, TimeSpan? refreshInterval = null, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(stats);
        _stats = stats;
        _refreshInterval = refreshInterval ?? TimeSpan.FromSeconds(1);
        _tags = layer is null ? [] : [new("layer", layer)];
        _meter = meterFactory?.Create(new MeterOptions(MeterName)) ?? new Meter(MeterName);

        _meter.CreateObservableCounter("moegs.routings", () => Measure((long)Snapshot().TotalRoutings), "{batch}", "Batches recorded.");
        _meter.CreateObservableCounter("moegs.tokens", () => Measure((long)Snapshot().TotalTokens), "{token}", "Tokens recorded.");
        _meter.CreateObservableCounter("moegs.tokens.dropped", () => Measure((long)Snapshot().TokensDropped), "{token}", "Tokens dropped.");
        _meter.CreateObservableCounter("moegs.expert_ids.invalid", () => Measure((long)Snapshot().InvalidExpertIds), "{id}", "Top-k ids outside [0, E).");
        _meter.CreateObservableCounter("moegs.expert.tokens", ExpertTokens, "{token}", "Token slots per expert (tag: expert).");
        _meter.CreateObservableGauge("moegs.utilization.cv", () => Measure(Snapshot().UtilizationCv()), null, "Coefficient of variation of expert utilization.");
        _meter.CreateObservableGauge("moegs.load.max_mean_ratio", () => Measure(MaxMeanRatio(Snapshot())), null, "Most loaded expert's utilization over the mean.");
        _meter.CreateObservableGauge("moegs.routing.efficiency", () => Measure(Snapshot().RoutingEfficiency), "%", "Percentage of tokens not dropped.");
        _meter.CreateObservableGauge("moegs.loss.load_balance", () => Measure(Snapshot().AverageLoadBalanceLoss), null, "Mean load-balancing loss.");
        _meter.CreateObservableGauge("moegs.loss.router_z", () => Measure(Snapshot().AverageRouterZLoss), null, "Mean router z-loss.");
        _latency = _meter.CreateHistogram<double>("moegs.routing.latency", "ms", "Routing latency.");
        stats.LatencyRecorded += OnLatency;
    }

    /// <summary>Snapshots taken so far (each is one device synchronization on a device engine).</summary>
    public int SnapshotsTaken { get; private set; }

    /// <summary>Stops publishing.</summary>
    public void Dispose()
    {
        _stats.LatencyRecorded -= OnLatency;
        _meter.Dispose();
        lock (_lock)
        {
            _snapshot?.Dispose();
            _snapshot = null;
        }
    }

    private static float MaxMeanRatio(RoutingStats stats)
    {
        var summary = stats.UtilizationSummary();
        return summary.TryGetValue("mean_utilization", out var mean) && mean > 0f ? summary["max_utilization"] / mean : 0f;
    }

    private void OnLatency(double milliseconds) => _latency.Record(milliseconds, _tags);

    private Measurement<T> Measure<T>(T value)
        where T : struct => new(value, _tags);

    private IEnumerable<Measurement<long>> ExpertTokens()
    {
        var counts = Snapshot().ExpertTokenCounts;
        var measurements = new Measurement<long>[counts.Count];
        for (var e = 0; e < counts.Count; e++)
        {
            measurements[e] = new Measurement<long>((long)counts[e], [.. _tags, new("expert", e)]);
        }

        return measurements;
    }

    private RoutingStats Snapshot()
    {
        lock (_lock)
        {
            if (_snapshot is null || Stopwatch.GetElapsedTime(_snapshotTimestamp) >= _refreshInterval)
            {
                _snapshot?.Dispose();
                _snapshot = _stats.Snapshot();
                _snapshotTimestamp = Stopwatch.GetTimestamp();
                SnapshotsTaken++;
            }

            return _snapshot;
        }
    }
}
