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
/// <c>moegs.slots.dropped</c> (<see cref="RoutingStats.SlotsDropped"/>: slots beyond the expert capacity;
/// without one, k per dropped token a record of ids reported, and a decision's dropped tokens), <c>moegs.expert_ids.invalid</c> (ids outside
/// <c>[0, E)</c>) and <c>moegs.expert.tokens</c> (slots per expert, tag <c>expert</c>); each reports
/// the total since the statistics were created or last reset. An expert reported once is reported on,
/// as 0 after a reset that emptied the counts (statistics without <see cref="RoutingStatsOptions.Experts"/>),
/// so that an exporter serves its reset rather than its last count. Current values are observable gauges:
/// <c>moegs.balancedness</c> (mean over most slots per expert since the start), <c>moegs.utilization.cv</c>,
/// <c>moegs.load.max_mean_ratio</c>, <c>moegs.routing.efficiency</c> (%),
/// <c>moegs.loss.load_balance</c>, <c>moegs.loss.router_z</c>.
/// </para>
/// <para>
/// A collection reads every observable instrument from one reading of the statistics, copied out of
/// one snapshot (one device synchronization on a device engine). The next collection takes a new
/// reading when the last is older than <c>refreshInterval</c>. A collection is the callbacks one
/// thread runs back to back: it keeps its reading to the end however long it takes, unless its
/// listener pauses over a second between two instruments (time in any publisher's callback, its reading included,
/// is work, not a pause); two listeners of different instruments
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
/// this object) sees all of them. It is not part of a collection's reading: a latency is added as it is
/// recorded, so while the router records, its count runs ahead of <c>moegs.routings</c> (read from the
/// snapshot) by the batches since that snapshot. Latencies recorded earlier stay in
/// <see cref="RoutingStats.RoutingLatencyStats"/> only; a reset of the statistics does not reset the histogram.
/// Its buckets, advised to listeners, run from 10 µs to 10 s.
/// </para>
/// <para>Every measurement carries a <c>layer</c> tag when a layer name is given.</para>
/// <para>
/// Every publisher of one meter factory (of the process, without one), this class's and
/// <see cref="ModelRoutingStatsMetrics"/>'s, shares one meter and one instrument per name; each
/// instrument reports the measurements of the live publishers, so give each its own <c>layer</c>.
/// Disposing a publisher takes its observable measurements away and leaves the others'. The latency
/// histogram is the exception: a listener keeps what it aggregated, so an exporter keeps serving a
/// disposed publisher's <c>layer</c> of it, unchanged, while another publisher of the meter lives (a
/// new publisher of that <c>layer</c> adds to it); disposing the last publisher ends the meter.
/// </para>
/// </remarks>
public sealed class RoutingStatsMetrics : IDisposable
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "MoeGpuStats";

    /// <summary>The latency histogram's bucket boundaries, in seconds: 10 µs to 10 s (advised to listeners; OpenTelemetry's default buckets are for milliseconds).</summary>
    internal static readonly double[] LatencyBucketsSeconds = [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    /// <summary>The description of <c>moegs.expert.tokens</c>, which a model's per-expert series share: one instrument, one description.</summary>
    internal const string ExpertTokensDescription = "Token-expert slots per expert since the start (tags: expert, and layer when given).";

    private readonly RoutingStats _stats;
    private readonly KeyValuePair<string, object?>[] _tags;
    private readonly SharedInstruments _shared;
    private readonly Histogram<double> _latency;
    private readonly CollectionReading<Reading> _reading;
    private int _disposed;

    // The most experts reported: an exporter keeps serving an expert's last count until it is reported again.
    private int _expertsReported;

    /// <summary>Creates the instruments for <paramref name="stats"/>.</summary>
    /// <param name="stats">The statistics to publish; the caller keeps ownership.</param>
    /// <param name="layer">The MoE layer these statistics belong to, as the <c>layer</c> tag; null for none.</param>
    /// <param name="refreshInterval">How old a reading may be before a collection takes a new snapshot; default 1 s.</param>
    /// <param name="meterFactory">The host's meter factory; null creates the meter directly.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stats"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="stats"/> were disposed (or, on a device, their accelerator).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="refreshInterval"/> is negative.</exception>
    public RoutingStatsMetrics(RoutingStats stats, string? layer = null, TimeSpan? refreshInterval = null, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(stats);
        if (stats.Gone() is { } gone)
        {
            throw Disposed.ArgumentError(nameof(stats), gone);
        }

        var interval = refreshInterval ?? TimeSpan.FromSeconds(1);
        OutOfRange.ThrowIfNegative(interval, nameof(refreshInterval));
        _stats = stats;
        _reading = new CollectionReading<Reading>(() => Reading.Of(stats), interval);
        _tags = layer is null ? [] : [new("layer", layer)];
        _shared = SharedInstruments.Acquire(meterFactory);
        try
        {
            _shared.ObservableCounter(this, "moegs.routings", _reading.ObserveOne(r => Measure((long)r.TotalRoutings)), "{batch}", "Batches recorded.");
            _shared.ObservableCounter(this, "moegs.tokens", _reading.ObserveOne(r => Measure((long)r.TotalTokens)), "{token}", "Tokens recorded.");
            _shared.ObservableCounter(this, "moegs.tokens.dropped", _reading.ObserveOne(r => Measure((long)r.TokensDropped)), "{token}", "Tokens the batches reported dropped (tokensDropped, a decision's dropped tokens); a capacity drops slots, counted in moegs.slots.dropped.");
            _shared.ObservableCounter(this, "moegs.slots.routed", _reading.ObserveOne(r => Measure((long)r.RoutedSlots)), "{slot}", "Token-expert slots routed to a valid expert (a decision's tokens).");
            _shared.ObservableCounter(this, "moegs.slots.dropped", _reading.ObserveOne(r => Measure((long)r.SlotsDropped)), "{slot}", "Routed slots dropped: beyond the expert capacity; without one, k per reported dropped token (a decision's dropped tokens).");
            _shared.ObservableCounter(this, "moegs.expert_ids.invalid", _reading.ObserveOne(r => Measure((long)r.InvalidExpertIds)), "{id}", "Top-k ids outside [0, E).");
            _shared.ObservableCounter(this, "moegs.expert.tokens", _reading.Observe(ExpertTokens), "{slot}", ExpertTokensDescription);
            _shared.ObservableGauge(this, "moegs.utilization.cv", _reading.ObserveOne(r => Measure(r.UtilizationCv)), null, "Coefficient of variation of expert utilization.");
            _shared.ObservableGauge(this, "moegs.balancedness", _reading.ObserveOne(r => Measure(r.Balancedness)), null, "Mean over most token-expert slots per expert since the start (vLLM's balancedness; 1 = even, and without load).");
            _shared.ObservableGauge(this, "moegs.load.max_mean_ratio", _reading.ObserveOne(r => Measure(r.MaxMeanRatio)), null, "Most loaded expert's utilization over the mean.");
            _shared.ObservableGauge(this, "moegs.routing.efficiency", _reading.ObserveOne(r => Measure(r.RoutingEfficiency)), "%", "Percentage of routed slots kept.");
            _shared.ObservableGauge(this, "moegs.loss.load_balance", _reading.ObserveOne(r => Measure(r.AverageLoadBalanceLoss)), null, "Mean load-balancing loss.");
            _shared.ObservableGauge(this, "moegs.loss.router_z", _reading.ObserveOne(r => Measure(r.AverageRouterZLoss)), null, "Mean router z-loss.");
            _latency = _shared.Histogram("moegs.routing.latency", "s", "Routing latency.", LatencyBucketsSeconds);
        }
        catch
        {
            _shared.Release(this);
            throw;
        }

        stats.LatencyRecorded += OnLatency;
    }

    /// <summary>
    /// The meter that holds the instruments: one per meter factory (one per process without one), shared
    /// by every publisher created with it, whose measurements each instrument reports side by side.
    /// </summary>
    public Meter Meter => _shared.Meter;

    /// <summary>Snapshots taken so far (each is one device synchronization on a device engine).</summary>
    public int SnapshotsTaken => _reading.Taken;

    /// <summary>Stops publishing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stats.LatencyRecorded -= OnLatency;
        _shared.Release(this);
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
        double Balancedness,
        double UtilizationCv,
        double MaxMeanRatio,
        double RoutingEfficiency,
        double AverageLoadBalanceLoss,
        double AverageRouterZLoss)
    {
        public static Reading Of(RoutingStats stats)
        {
            using var snapshot = stats.Snapshot();
            var summary = snapshot.UtilizationSummary();
            // No load is balanced (every expert at the mean), as a model's layer reads it: 0 would be a ratio no load has.
            var ratio = summary.TryGetValue("mean_utilization", out var mean) && mean > 0f ? summary["max_utilization"] / mean : 1f;
            ulong[] counts = [.. snapshot.ExpertTokenCounts];
            return new Reading(
                snapshot.TotalRoutings,
                snapshot.TotalTokens,
                snapshot.TokensDropped,
                snapshot.RoutedSlots,
                snapshot.SlotsDropped,
                snapshot.InvalidExpertIds,
                counts,
                RoutingMath.Balancedness(counts),
                FloatStatistic.ToDouble(snapshot.UtilizationCv()),
                FloatStatistic.ToDouble(ratio),
                FloatStatistic.ToDouble(snapshot.RoutingEfficiency),
                FloatStatistic.ToDouble(snapshot.AverageLoadBalanceLoss),
                FloatStatistic.ToDouble(snapshot.AverageRouterZLoss));
        }
    }
}
