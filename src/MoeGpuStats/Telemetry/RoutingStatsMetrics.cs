using System.Diagnostics.Metrics;

namespace MoeGpuStats.Telemetry;

/// <summary>
/// Publishes a <see cref="RoutingStats"/> through <c>System.Diagnostics.Metrics</c> (meter
/// <see cref="MeterName"/>), so OpenTelemetry, <c>dotnet-counters</c> and Prometheus exporters see it.
/// </summary>
/// <remarks>
/// <para>
/// Totals that only grow are observable counters: <c>moegs.routings</c> (batches),
/// <c>moegs.tokens</c>, <c>moegs.tokens.dropped</c>, <c>moegs.slots.routed</c>,
/// <c>moegs.slots.dropped</c> (beyond the expert capacity), <c>moegs.expert_ids.invalid</c> (ids outside
/// <c>[0, E)</c>) and <c>moegs.expert.tokens</c> (slots per expert, tag <c>expert</c>); each reports
/// the total since the statistics were created or last reset. An expert reported once is reported on,
/// as 0 after a reset that emptied the counts (statistics without <see cref="RoutingStatsOptions.Experts"/>),
/// so that an exporter serves its reset rather than its last count. Current values are observable gauges:
/// <c>moegs.utilization.cv</c>, <c>moegs.load.max_mean_ratio</c>, <c>moegs.routing.efficiency</c> (%),
/// <c>moegs.loss.load_balance</c>, <c>moegs.loss.router_z</c>.
/// </para>
/// <para>
/// A collection reads every observable instrument from one reading of the statistics, copied out of
/// one snapshot (one device synchronization on a device engine). The next collection takes a new
/// reading when the last is older than <c>refreshInterval</c>. A collection is the callbacks one
/// thread runs back to back: it keeps its reading to the end however long it takes, unless its
/// listener pauses over a second between two instruments; two listeners of different instruments
/// collecting on one thread less than a second apart count as one collection. Collections may run
/// on any threads at once; they share the reading's values, never a snapshot that another
/// collection could dispose. A snapshot may be taken while another thread records, on either engine.
/// </para>
/// <para>
/// <c>moegs.routing.latency</c> is a histogram in seconds (unit <c>s</c>, as OpenTelemetry's
/// conventions and Prometheus's base units want durations) of the latencies passed to
/// <see cref="RoutingStats.RecordRoutingLatency"/> after this object was created: create it before
/// the first record for the histogram to count every latency. Like every
/// <c>System.Diagnostics.Metrics</c> histogram it reaches only listeners that were enabled when a
/// latency was recorded; a listener enabled on instrument publication (an exporter started before
/// this object) sees all of them. Latencies recorded earlier stay in
/// <see cref="RoutingStats.RoutingLatencyStats"/> only; a reset of the statistics does not reset the histogram.
/// </para>
/// <para>Every measurement carries a <c>layer</c> tag when a layer name is given.</para>
/// </remarks>
public sealed class RoutingStatsMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "MoeGpuStats";

    private readonly RoutingStats _stats;
    private readonly KeyValuePair<string, object?>[] _tags;
    private readonly Histogram<double> _latency;
    private readonly CollectionReading<Reading> _reading;

    // The most experts reported: an exporter keeps serving an expert's last count until it is reported again.
    private int _expertsReported;

    /// <summary>Creates the instruments for <paramref name="stats"/>.</summary>
    /// <param name="stats">The statistics to publish; the caller keeps ownership.</param>
    /// <param name="layer">The MoE layer these statistics belong to, as the <c>layer</c> tag; null for none.</param>
    /// <param name="refreshInterval">How old a reading may be before a collection takes a new snapshot; default 1 s.</param>
    /// <param name="meterFactory">The host's meter factory; null creates the meter directly.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stats"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="refreshInterval"/> is negative.</exception>
    public RoutingStatsMetrics(RoutingStats stats, string? layer = null, TimeSpan? refreshInterval = null, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(stats);
        var interval = refreshInterval ?? TimeSpan.FromSeconds(1);
        ArgumentOutOfRangeException.ThrowIfLessThan(interval, TimeSpan.Zero, nameof(refreshInterval));
        _stats = stats;
        _reading = new CollectionReading<Reading>(() => Reading.Of(stats), interval);
        _tags = layer is null ? [] : [new("layer", layer)];
        Meter = meterFactory?.Create(new MeterOptions(MeterName)) ?? new Meter(MeterName);

        Meter.CreateObservableCounter("moegs.routings", _reading.Observe(r => Measure((long)r.TotalRoutings)), "{batch}", "Batches recorded.");
        Meter.CreateObservableCounter("moegs.tokens", _reading.Observe(r => Measure((long)r.TotalTokens)), "{token}", "Tokens recorded.");
        Meter.CreateObservableCounter("moegs.tokens.dropped", _reading.Observe(r => Measure((long)r.TokensDropped)), "{token}", "Tokens dropped.");
        Meter.CreateObservableCounter("moegs.slots.routed", _reading.Observe(r => Measure((long)r.RoutedSlots)), "{slot}", "Token-expert slots routed to a valid expert (a decision's tokens).");
        Meter.CreateObservableCounter("moegs.slots.dropped", _reading.Observe(r => Measure((long)r.SlotsDropped)), "{slot}", "Routed slots dropped (beyond the expert capacity).");
        Meter.CreateObservableCounter("moegs.expert_ids.invalid", _reading.Observe(r => Measure((long)r.InvalidExpertIds)), "{id}", "Top-k ids outside [0, E).");
        Meter.CreateObservableCounter("moegs.expert.tokens", _reading.Observe(ExpertTokens), "{slot}", "Token-expert slots per expert (tag: expert).");
        Meter.CreateObservableGauge("moegs.utilization.cv", _reading.Observe(r => Measure(r.UtilizationCv)), null, "Coefficient of variation of expert utilization.");
        Meter.CreateObservableGauge("moegs.load.max_mean_ratio", _reading.Observe(r => Measure(r.MaxMeanRatio)), null, "Most loaded expert's utilization over the mean.");
        Meter.CreateObservableGauge("moegs.routing.efficiency", _reading.Observe(r => Measure(r.RoutingEfficiency)), "%", "Percentage of routed slots kept.");
        Meter.CreateObservableGauge("moegs.loss.load_balance", _reading.Observe(r => Measure(r.AverageLoadBalanceLoss)), null, "Mean load-balancing loss.");
        Meter.CreateObservableGauge("moegs.loss.router_z", _reading.Observe(r => Measure(r.AverageRouterZLoss)), null, "Mean router z-loss.");
        _latency = Meter.CreateHistogram<double>("moegs.routing.latency", "s", "Routing latency.");
        stats.LatencyRecorded += OnLatency;
    }

    /// <summary>The meter that holds the instruments (exporters may select it by reference).</summary>
    public Meter Meter { get; }

    /// <summary>Snapshots taken so far (each is one device synchronization on a device engine).</summary>
    public int SnapshotsTaken => _reading.Taken;

    /// <summary>Stops publishing.</summary>
    public void Dispose()
    {
        _stats.LatencyRecorded -= OnLatency;
        Meter.Dispose();
    }

    private void OnLatency(double milliseconds) => _latency.Record(milliseconds / 1_000, _tags);

    private Measurement<T> Measure<T>(T value)
        where T : struct => new(value, _tags);

    private IEnumerable<Measurement<long>> ExpertTokens(Reading reading)
    {
        var counts = reading.ExpertTokenCounts;
        // A maximum kept by compare-and-swap: collections on other threads at once (readings of fewer
        // experts among them) must not lower it, or an expert would again keep its last count after a reset.
        int experts, reported;
        do
        {
            reported = Volatile.Read(ref _expertsReported);
            experts = Math.Max(counts.Length, reported);
        }
        while (experts != reported && Interlocked.CompareExchange(ref _expertsReported, experts, reported) != reported);
        var measurements = new Measurement<long>[experts];
        for (var e = 0; e < experts; e++)
        {
            measurements[e] = new Measurement<long>(e < counts.Length ? (long)counts[e] : 0, [.. _tags, new("expert", e)]);
        }

        return measurements;
    }

    /// <summary>Every value the observable instruments report, copied out of one snapshot and never changed.</summary>
    private sealed record Reading(
        ulong TotalRoutings,
        ulong TotalTokens,
        ulong TokensDropped,
        ulong RoutedSlots,
        ulong SlotsDropped,
        ulong InvalidExpertIds,
        ulong[] ExpertTokenCounts,
        float UtilizationCv,
        float MaxMeanRatio,
        float RoutingEfficiency,
        float AverageLoadBalanceLoss,
        float AverageRouterZLoss)
    {
        public static Reading Of(RoutingStats stats)
        {
            using var snapshot = stats.Snapshot();
            var summary = snapshot.UtilizationSummary();
            var ratio = summary.TryGetValue("mean_utilization", out var mean) && mean > 0f ? summary["max_utilization"] / mean : 0f;
            return new Reading(
                snapshot.TotalRoutings,
                snapshot.TotalTokens,
                snapshot.TokensDropped,
                snapshot.RoutedSlots,
                snapshot.SlotsDropped,
                snapshot.InvalidExpertIds,
                [.. snapshot.ExpertTokenCounts],
                snapshot.UtilizationCv(),
                ratio,
                snapshot.RoutingEfficiency,
                snapshot.AverageLoadBalanceLoss,
                snapshot.AverageRouterZLoss);
        }
    }
}
