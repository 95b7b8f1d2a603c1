using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.IO.Compression;
using System.Text;
using Prometheus;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// The instruments of one publisher (<see cref="MoeGpuStats.Telemetry.RoutingStatsMetrics"/> or
/// <see cref="MoeGpuStats.Telemetry.ModelRoutingStatsMetrics"/>) as Prometheus text (0.0.4), collected one at a time.
/// </summary>
/// <remarks>
/// Only the instruments the publisher creates through <see cref="Meters"/> are exposed, each named
/// <c>moegpustats_</c> plus the instrument's name with <c>.</c> as <c>_</c>: observable counters as
/// Prometheus counters with the <c>_total</c> suffix (a total lower than the last one exposed, after a
/// reset, is exposed as a counter reset), gauges as gauges (a percentage, unit <c>%</c>, with the <c>_percent</c> suffix), and the latency histogram (unit <c>s</c>)
/// as a histogram with the <c>_seconds</c> suffix. prometheus-net's own meter adapter is not used: it serves every counter as a
/// gauge and listens only from the first scrape on, so the histogram would miss earlier latencies.
/// The listener here attaches before the instruments exist and so counts every latency recorded
/// after the exposition is made.
/// </remarks>
internal sealed class MetricsExposition : IDisposable
{
    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly IMetricFactory _factory;
    private readonly MeterListener _listener = new();
    private readonly ScopedMeterFactory _meters = new();
    private readonly ConcurrentDictionary<Instrument, Exported?> _exported = new();

    // One collection at a time: a counter's reset is recognized by a lower total, which two
    // overlapping collections could otherwise expose out of order.
    private readonly SemaphoreSlim _collecting = new(1, 1);

    // The newest collection, which a scrape that arrived before it began takes as its own (it is as new as one of its
    // own would be): scrapes that wait for the gate together share one collection and one body. Kept only while a
    // scrape waits for the gate, so that no body outlives the scrapes that may take it.
    private Collection? _latest;
    private int _waiting;

    // prometheus-net writes a histogram's _count as the sum of its buckets and then reads the buckets again: a latency
    // observed between the two reads made _count and the +Inf bucket differ within one scrape. Latencies that arrive
    // while a collection exports wait here, and are observed once it is done.
    private readonly Lock _observing = new();
    private readonly List<(Histogram.Child Histogram, double Value)> _deferred = [];
    private bool _exporting;

    public MetricsExposition()
    {
        _factory = Metrics.WithCustomRegistry(_registry);
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter.Scope, _meters))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Export(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Export(instrument, value, tags));
        _listener.Start();
    }

    /// <summary>The factory a publisher makes its meters with: only their instruments are exposed.</summary>
    public IMeterFactory Meters => _meters;

    /// <summary>The collections made so far.</summary>
    internal int Collections { get; private set; }

    /// <summary>The gate one collection holds at a time; tests hold it to keep a scrape waiting.</summary>
    internal SemaphoreSlim CollectionGate => _collecting;

    /// <summary>
    /// The metrics as of a scrape that arrived at <paramref name="arrived"/> (a <see cref="System.Diagnostics.Stopwatch"/>
    /// timestamp): the newest collection if it began since, else a new one.
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> was cancelled while the scrape waited for the gate.</exception>
    /// <exception cref="AggregateException">Reading the statistics failed (each instrument's exception inside); nothing is exported.</exception>
    public async Task<Collection> CollectAsync(long arrived, CancellationToken cancel)
    {
        Interlocked.Increment(ref _waiting);
        try
        {
            await _collecting.WaitAsync(cancel).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }

        try
        {
            var latest = _latest;
            if (latest is null || latest.Began < arrived)
            {
                var began = System.Diagnostics.Stopwatch.GetTimestamp();
                // Read here, not in a registry's before-collect callback: prometheus-net logs a callback's exception and
                // exports the last values read, so a failed reading would be served as a healthy, frozen one.
                _listener.RecordObservableInstruments();
                var text = new MemoryStream();
                Exporting(true);
                try
                {
                    await _registry.CollectAndExportAsTextAsync(text, ExpositionFormat.PrometheusText, cancel).ConfigureAwait(false);
                }
                finally
                {
                    Exporting(false);
                }

                Collections++;
                // Exactly the text's length: a stream's buffer may be twice it, held as long as a slow scraper reads.
                latest = new Collection(began, text.ToArray());
            }

            _latest = Volatile.Read(ref _waiting) > 0 ? latest : null;
            return latest;
        }
        finally
        {
            _collecting.Release();
        }
    }

    public void Dispose()
    {
        _meters.Dispose();
        _listener.Dispose();
    }

    private void Export<T>(Instrument instrument, T measurement, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        where T : struct
    {
        var names = new string[tags.Length];
        var values = new string[tags.Length];
        var sorted = tags.ToArray();
        Array.Sort(sorted, (a, b) => string.CompareOrdinal(a.Key, b.Key));
        for (var i = 0; i < sorted.Length; i++)
        {
            names[i] = PrometheusName(sorted[i].Key);
            values[i] = Convert.ToString(sorted[i].Value, System.Globalization.CultureInfo.InvariantCulture) ?? "";
        }

        var exported = _exported.GetOrAdd(instrument, i => Create(i, names));
        if (exported is null || !exported.LabelNames.AsSpan().SequenceEqual(names))
        {
            return;
        }

        var value = Convert.ToDouble(measurement, System.Globalization.CultureInfo.InvariantCulture);
        switch (exported.Collector)
        {
            case Counter counter:
                var child = counter.WithLabels(values);
                if (value < child.Value)
                {
                    counter.RemoveLabelled(values);
                    child = counter.WithLabels(values);
                }

                child.IncTo(value);
                break;
            case Gauge gauge:
                gauge.WithLabels(values).Set(value);
                break;
            case Histogram histogram:
                Observe(histogram.WithLabels(values), value);
                break;
        }
    }

    private void Observe(Histogram.Child histogram, double value)
    {
        lock (_observing)
        {
            if (_exporting)
            {
                _deferred.Add((histogram, value));
                return;
            }

            histogram.Observe(value);
        }
    }

    /// <summary>Marks an export begun, or done: then the latencies that arrived during it are observed.</summary>
    private void Exporting(bool exporting)
    {
        lock (_observing)
        {
            _exporting = exporting;
            if (!exporting)
            {
                foreach (var (histogram, value) in _deferred)
                {
                    histogram.Observe(value);
                }

                _deferred.Clear();
            }
        }
    }

    private Exported? Create(Instrument instrument, string[] labelNames)
    {
        var name = PrometheusName($"{instrument.Meter.Name}_{instrument.Name}");
        var help = string.IsNullOrEmpty(instrument.Unit) ? instrument.Description ?? "" : $"({instrument.Unit}) {instrument.Description}";
        Collector? collector = instrument switch
        {
            ObservableCounter<long> => _factory.CreateCounter($"{name}_total", help, labelNames),
            // A percentage says so in its name, as OpenTelemetry's Prometheus exporter names it.
            ObservableGauge<double> or ObservableGauge<long> => _factory.CreateGauge(instrument.Unit == "%" ? $"{name}_percent" : name, help, labelNames),
            // The buckets the publisher advises (RoutingStatsMetrics: 10 µs to 10 s), as OpenTelemetry's exporters take them.
            Histogram<double> histogram => _factory.CreateHistogram(
                instrument.Unit == "s" ? $"{name}_seconds" : name, help, labelNames, new HistogramConfiguration { Buckets = histogram.Advice?.HistogramBucketBoundaries?.ToArray() }),
            _ => null,
        };
        return collector is null ? null : new Exported(collector, labelNames);
    }

    private static string PrometheusName(string name)
    {
        var result = new StringBuilder(name.Length);
        foreach (var c in name)
        {
            result.Append(char.IsAsciiLetterOrDigit(c) ? char.ToLowerInvariant(c) : '_');
        }

        return result.ToString();
    }

    private sealed record Exported(Collector Collector, string[] LabelNames);

    /// <summary>One collection's text, begun at <paramref name="Began"/> (a <see cref="System.Diagnostics.Stopwatch"/> timestamp), and its gzip, made once when first asked.</summary>
    internal sealed record Collection(long Began, ReadOnlyMemory<byte> Text)
    {
        private readonly Lazy<ReadOnlyMemory<byte>> _gzipped = new(() => Gzip(Text));

        public ReadOnlyMemory<byte> Gzipped() => _gzipped.Value;

        private static ReadOnlyMemory<byte> Gzip(ReadOnlyMemory<byte> text)
        {
            var compressed = new MemoryStream();
            using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
            {
                gzip.Write(text.Span);
            }

            return compressed.ToArray();
        }
    }

    /// <summary>Creates meters whose <see cref="Meter.Scope"/> is this factory, so the exposition listens to its own instruments only; disposes them with the exposition (a factory's meters are the factory's to dispose).</summary>
    private sealed class ScopedMeterFactory : IMeterFactory
    {
        private readonly List<Meter> _created = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(new MeterOptions(options.Name) { Version = options.Version, Tags = options.Tags, Scope = this });
            lock (_created)
            {
                _created.Add(meter);
            }

            return meter;
        }

        public void Dispose()
        {
            lock (_created)
            {
                _created.ForEach(meter => meter.Dispose());
                _created.Clear();
            }
        }
    }
}
