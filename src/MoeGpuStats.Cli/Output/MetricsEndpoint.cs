using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using MoeGpuStats.Telemetry;
using Prometheus;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Serves the metrics of one <see cref="RoutingStats"/> (<see cref="RoutingStatsMetrics"/>) or one
/// <see cref="ModelRoutingStats"/> (<see cref="ModelRoutingStatsMetrics"/>) for Prometheus to scrape at
/// <c>http://HOST:PORT/metrics</c>, in the Prometheus text format (0.0.4).
/// </summary>
/// <remarks>
/// Only the instruments this endpoint's publisher creates are served, each named
/// <c>moegpustats_</c> plus the instrument's name with <c>.</c> as <c>_</c>: observable counters as
/// Prometheus counters with the <c>_total</c> suffix (a total lower than the last one served, after a
/// reset, is served as a counter reset), gauges as gauges, and the latency histogram (unit <c>s</c>)
/// as a histogram with the <c>_seconds</c> suffix. prometheus-net's own meter adapter is not used: it serves every counter as a
/// gauge and listens only from the first scrape on, so the histogram would miss earlier latencies.
/// The listener here attaches before the instruments exist and so counts every latency recorded
/// after <see cref="Start"/>. The host <c>localhost</c> or <c>127.0.0.1</c> serves both names, on
/// the loopback interface only; any other host is served as given. GET and HEAD (the headers alone)
/// are answered, gzip-compressed when the scraper accepts it (as Prometheus does); other methods get
/// 405, other paths 404.
/// </remarks>
internal sealed class MetricsEndpoint : IDisposable
{
    private const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>
    /// Scrapes answered at once; each holds its body (megabytes for a large model's per-expert series) until a slow
    /// scraper has read it, so this bounds the memory they hold. An HA pair of Prometheus servers and a few people's curls
    /// stay far under it (an answer leaves the count just after its scraper has it, so a busy scraper may briefly count
    /// twice); more are told to retry.
    /// </summary>
    internal const int MaxAnswersInFlight = 32;

    /// <summary>
    /// How long a scraper may take to read its body: one that stops reading would hold its answer's place among
    /// <see cref="MaxAnswersInFlight"/>, and its connection, for good. Prometheus gives up on a scrape after its
    /// scrape_timeout (10 s by default).
    /// </summary>
    internal static readonly TimeSpan DefaultAnswerTimeout = TimeSpan.FromSeconds(30);

    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly IMetricFactory _factory;
    private readonly MeterListener _listener = new();
    private readonly ScopedMeterFactory _meters = new();
    private readonly ConcurrentDictionary<Instrument, Exported?> _exported = new();

    // One collection at a time: a counter's reset is recognized by a lower total, which two
    // overlapping collections could otherwise serve out of order.
    private readonly SemaphoreSlim _collecting = new(1, 1);

    // The newest collection, which a scrape that arrived before it began takes as its own (it is as new as one of its
    // own would be): scrapes that wait for the gate together share one collection and one body. Kept only while a
    // scrape waits for the gate, so that no body outlives the scrapes that may take it.
    private Collection? _latest;
    private int _waiting;
    private readonly HttpListener _http = new();
    private readonly CancellationTokenSource _stopping = new();

    // Scrapes being answered: Dispose lets them finish before it stops the listener, so that a scrape
    // during shutdown gets a 503 (the target is down) rather than an empty 200, which Prometheus would
    // take for every series gone.
    private readonly ConcurrentDictionary<Task, bool> _answers = new();

    // Scrapes told the endpoint is busy: not counted against the most answered at once, but drained alike.
    private readonly ConcurrentDictionary<Task, bool> _busyAnswers = new();
    private IDisposable? _metrics;
    private Task? _serving;
    private int _disposed;

    private MetricsEndpoint()
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
        _registry.AddBeforeCollectCallback(_listener.RecordObservableInstruments);
    }

    /// <summary>
    /// Starts serving <paramref name="stats"/> at <c>http://<paramref name="host"/>:<paramref name="port"/>/metrics</c>.
    /// The caller keeps ownership of <paramref name="stats"/>; dispose the endpoint before it.
    /// </summary>
    /// <exception cref="HttpListenerException">The port is in use or the host cannot be bound.</exception>
    /// <exception cref="ArgumentException">The host or port do not make a valid address.</exception>
    public static MetricsEndpoint Start(RoutingStats stats, string host, int port, string? layer = null) =>
        Start(meters => new RoutingStatsMetrics(stats, layer, meterFactory: meters), host, port);

    /// <summary>
    /// Starts serving the model <paramref name="stats"/> with bounded cardinality (<see cref="ModelRoutingStatsMetrics"/>):
    /// <paramref name="topExperts"/> hottest and coldest experts per layer, per-expert series only with <paramref name="expertSeries"/>,
    /// the balance over the window's newest <paramref name="recentSteps"/> steps, and over <paramref name="epSize"/> EP ranks, where given.
    /// </summary>
    /// <exception cref="HttpListenerException">The port is in use or the host cannot be bound.</exception>
    /// <exception cref="ArgumentException">The host or port do not make a valid address.</exception>
    public static MetricsEndpoint Start(ModelRoutingStats stats, string host, int port, int topExperts, bool expertSeries, int? recentSteps = null, int? epSize = null) =>
        Start(meters => new ModelRoutingStatsMetrics(stats, topExperts, expertSeries, meterFactory: meters, recentSteps: recentSteps, epSize: epSize), host, port);

    private static MetricsEndpoint Start(Func<IMeterFactory, IDisposable> publish, string host, int port)
    {
        var endpoint = new MetricsEndpoint();
        try
        {
            foreach (var name in HostNames(host))
            {
                endpoint._http.Prefixes.Add($"http://{name}:{port}/");
            }

            endpoint._metrics = publish(endpoint._meters);
            endpoint._http.Start();
        }
        catch
        {
            endpoint.Dispose();
            throw;
        }

        endpoint._serving = endpoint.ServeAsync();
        return endpoint;
    }

    /// <summary>The time <see cref="Dispose"/> gives scrapes in flight to be answered before it closes their connections.</summary>
    internal static readonly TimeSpan AnswersDrainTimeout = TimeSpan.FromSeconds(5);

    /// <summary>The number of scrapes accepted and not yet answered.</summary>
    internal int AnswersInFlight => _answers.Count;

    /// <summary>How long a scraper may take to read its body before it is dropped (<see cref="DefaultAnswerTimeout"/>); tests shorten it.</summary>
    internal TimeSpan AnswerTimeout { get; set; } = DefaultAnswerTimeout;

    /// <summary>The collections made so far.</summary>
    internal int Collections { get; private set; }

    /// <summary>The gate one collection holds at a time; tests hold it to keep a scrape in flight.</summary>
    internal SemaphoreSlim CollectionGate => _collecting;

    public void Dispose()
    {
        // Calls after the first are ignored, as IDisposable asks: a second Cancel would throw on the disposed source.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();

        // Stopping the listener submits every response not yet sent as an empty 200, so the scrapes in
        // flight are answered first; once cancelled, each answers 503 at once. The accept loop runs
        // until Stop, so a scrape arriving during this wait is answered 503 too, and the wait goes on
        // until none is left. A scrape accepted in the moment between the last look and Stop can still
        // get the empty answer.
        var draining = System.Diagnostics.Stopwatch.StartNew();
        for (var left = AnswersDrainTimeout; !(_answers.IsEmpty && _busyAnswers.IsEmpty) && left > TimeSpan.Zero; left = AnswersDrainTimeout - draining.Elapsed)
        {
            Task.WaitAll([.. _answers.Keys, .. _busyAnswers.Keys], left);
        }

        if (_http.IsListening)
        {
            _http.Stop();
        }

        try
        {
            _serving?.GetAwaiter().GetResult();
        }
        catch (Exception exception) when (exception is HttpListenerException or ObjectDisposedException or OperationCanceledException)
        {
        }

        _http.Close();
        _metrics?.Dispose();
        _meters.Dispose();
        _listener.Dispose();
        _stopping.Dispose();
    }

    /// <summary>The names to serve for <paramref name="host"/>: both loopback names for either, IPv6 literals in brackets.</summary>
    internal static IEnumerable<string> HostNames(string host)
    {
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase) || host == "127.0.0.1")
        {
            return ["localhost", "127.0.0.1"];
        }

        return [IPAddress.TryParse(host, out var address) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{address}]" : host];
    }

    /// <summary>Accepts scrapes until the listener stops, also while <see cref="Dispose"/> waits for those in flight: a scrape left in the listener's queue would get Stop's empty 200.</summary>
    private async Task ServeAsync()
    {
        while (true)
        {
            HttpListenerContext context;
            long arrived;
            try
            {
                context = await _http.GetContextAsync().ConfigureAwait(false);
                arrived = System.Diagnostics.Stopwatch.GetTimestamp();
            }
            catch (Exception exception) when (exception is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            // A slow scraper must not hold up the next one.
            var busy = _answers.Count >= MaxAnswersInFlight;
            var answers = busy ? _busyAnswers : _answers;
            var answer = Task.Run(() => busy ? AnswerBusyAsync(context) : AnswerAsync(context, arrived));
            answers.TryAdd(answer, true);
            _ = answer.ContinueWith(done => answers.TryRemove(done, out _), TaskScheduler.Default);
        }
    }

    /// <summary>
    /// Whether an <c>Accept-Encoding</c> header accepts gzip: named with a quality above 0, or not named
    /// and <c>*</c> with a quality above 0 (RFC 9110: <c>*</c> stands for the codings not listed, so
    /// <c>gzip;q=0, *</c> refuses gzip).
    /// </summary>
    internal static bool AcceptsGzip(string? acceptEncoding)
    {
        double? gzip = null, any = null;
        foreach (var coding in (acceptEncoding ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!StringWithQualityHeaderValue.TryParse(coding, out var accepted))
            {
                continue;
            }

            if (accepted.Value.Equals("gzip", StringComparison.OrdinalIgnoreCase))
            {
                gzip = Math.Max(gzip ?? 0, accepted.Quality ?? 1);
            }
            else if (accepted.Value == "*")
            {
                any = Math.Max(any ?? 0, accepted.Quality ?? 1);
            }
        }

        return (gzip ?? any ?? 0) > 0;
    }

    /// <summary>The metrics as of a scrape that arrived at <paramref name="arrived"/>: the newest collection if it began since, else a new one.</summary>
    private async Task<Collection> CollectAsync(long arrived, CancellationToken cancel)
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
                var text = new MemoryStream();
                await _registry.CollectAndExportAsTextAsync(text, ExpositionFormat.PrometheusText, cancel).ConfigureAwait(false);
                Collections++;
                latest = new Collection(began, text.GetBuffer().AsMemory(0, (int)text.Length));
            }

            _latest = Volatile.Read(ref _waiting) > 0 ? latest : null;
            return latest;
        }
        finally
        {
            _collecting.Release();
        }
    }

    private async Task AnswerAsync(HttpListenerContext context, long arrived)
    {
        var response = context.Response;
        var head = IsHead(context);
        var answering = false;
        try
        {
            var path = context.Request.Url?.AbsolutePath.TrimEnd('/');
            if (path != "/metrics")
            {
                response.StatusCode = 404;
                return;
            }

            if (!head && context.Request.HttpMethod != "GET")
            {
                response.StatusCode = 405;
                response.AddHeader("Allow", "GET, HEAD");
                return;
            }

            var collection = await CollectAsync(arrived, _stopping.Token).ConfigureAwait(false);

            // Prometheus asks for gzip: a large model's per-expert series are megabytes of text.
            var gzip = AcceptsGzip(context.Request.Headers["Accept-Encoding"]);
            var payload = gzip ? collection.Gzipped() : collection.Text;
            response.StatusCode = 200;
            response.ContentType = ContentType;
            response.AddHeader("Vary", "Accept-Encoding");
            if (gzip)
            {
                response.AddHeader("Content-Encoding", "gzip");
            }

            response.ContentLength64 = payload.Length;
            if (head)
            {
                return;
            }

            answering = true;
            // The listener's writes take no cancellation: past the deadline, the connection is closed under the write.
            using var late = new CancellationTokenSource(AnswerTimeout);
            using (late.Token.Register(static state => End((HttpListenerResponse)state!, abort: true), response))
            {
                await response.OutputStream.WriteAsync(payload, _stopping.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (!answering)
        {
            await AnswerUnavailableAsync(response, head, "the metrics endpoint is stopping").ConfigureAwait(false);
        }
        catch (Exception exception) when (!answering && exception is not HttpListenerException and not ObjectDisposedException)
        {
            await AnswerUnavailableAsync(response, head, $"collection failed: {exception.Message}").ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The endpoint stopped or the scraper went away in the middle of the body: nothing more to answer.
        }
        finally
        {
            End(response);
        }
    }

    /// <summary>Answers a scrape beyond <see cref="MaxAnswersInFlight"/>: 503 with Retry-After, nothing collected.</summary>
    private static async Task AnswerBusyAsync(HttpListenerContext context)
    {
        var response = context.Response;
        try
        {
            response.AddHeader("Retry-After", "1");
            await AnswerUnavailableAsync(response, IsHead(context), $"busy: {MaxAnswersInFlight} scrapes are being answered, the most at once; retry").ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is HttpListenerException or ObjectDisposedException or InvalidOperationException)
        {
            // The scraper went away or the endpoint stopped: nothing to answer.
        }
        finally
        {
            End(response);
        }
    }

    /// <summary>
    /// Ends the response, or with <paramref name="abort"/> closes its connection under its body (from the answer timeout's
    /// timer thread, where an exception would end the process); a scraper gone, or the endpoint stopped, leaves nothing to end.
    /// </summary>
    private static void End(HttpListenerResponse response, bool abort = false)
    {
        try
        {
            if (abort)
            {
                response.Abort();
            }
            else
            {
                response.Close();
            }
        }
        catch (Exception exception) when (exception is HttpListenerException or ObjectDisposedException or InvalidOperationException or IOException)
        {
        }
    }

    /// <summary>
    /// Whether the scrape is a HEAD request, answered with GET's headers and no body: body bytes after a HEAD answer
    /// are read by a keep-alive client as the start of its next response.
    /// </summary>
    private static bool IsHead(HttpListenerContext context) => context.Request.HttpMethod == "HEAD";

    private static async Task AnswerUnavailableAsync(HttpListenerResponse response, bool head, string reason)
    {
        try
        {
            var message = Encoding.UTF8.GetBytes(reason + "\n");
            response.StatusCode = 503;
            response.ContentType = "text/plain; charset=utf-8";
            response.ContentLength64 = message.Length;
            if (!head)
            {
                await response.OutputStream.WriteAsync(message, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception exception) when (exception is HttpListenerException or ObjectDisposedException or InvalidOperationException or IOException)
        {
            // The scraper went away: nothing to answer.
        }
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
                histogram.WithLabels(values).Observe(value);
                break;
        }
    }

    private Exported? Create(Instrument instrument, string[] labelNames)
    {
        var name = PrometheusName($"{instrument.Meter.Name}_{instrument.Name}");
        var help = string.IsNullOrEmpty(instrument.Unit) ? instrument.Description ?? "" : $"({instrument.Unit}) {instrument.Description}";
        Collector? collector = instrument switch
        {
            ObservableCounter<long> => _factory.CreateCounter($"{name}_total", help, labelNames),
            ObservableGauge<double> or ObservableGauge<long> => _factory.CreateGauge(name, help, labelNames),
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
    private sealed record Collection(long Began, ReadOnlyMemory<byte> Text)
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

            return compressed.GetBuffer().AsMemory(0, (int)compressed.Length);
        }
    }

    /// <summary>Creates meters whose <see cref="Meter.Scope"/> is this factory, so the endpoint listens to its own instruments only; disposes them with the endpoint (a factory's meters are the factory's to dispose).</summary>
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
