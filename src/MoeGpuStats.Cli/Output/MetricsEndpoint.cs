using System.Net.Http.Headers;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Serves the metrics of one <see cref="RoutingStats"/> (<see cref="RoutingStatsMetrics"/>) or one
/// <see cref="ModelRoutingStats"/> (<see cref="ModelRoutingStatsMetrics"/>) for Prometheus to scrape at
/// <c>http://HOST:PORT/metrics</c>, in the Prometheus text format (0.0.4, <see cref="MetricsExposition"/>), on Kestrel.
/// </summary>
/// <remarks>
/// The host is read as <see cref="MetricsHost"/> reads it. GET and HEAD (the
/// headers alone) are answered, gzip-compressed when the scraper accepts it (as Prometheus does); other methods get
/// 405, other paths 404. Kestrel bounds the connections held (<see cref="MaxConnections"/>; more are closed unanswered),
/// the time a request's headers may take (<see cref="RequestHeadersTimeout"/>), an idle connection
/// (<see cref="KeepAliveTimeout"/>); the endpoint bounds the time a body may take (<see cref="AnswerTimeout"/>): with
/// a body of megabytes in the sockets' buffers, Kestrel's minimum read rate does not drop a scraper that stops reading.
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
    /// Connections held at once, idle or not: each takes a file descriptor and buffers, and unbounded, enough idle ones
    /// end the process at the open-file limit. Twice <see cref="MaxAnswersInFlight"/>, so that a scrape past those
    /// answered is still told to retry rather than refused.
    /// </summary>
    internal const int MaxConnections = 2 * MaxAnswersInFlight;

    /// <summary>How long a connection may take to send a request's headers (Prometheus sends them at once; Kestrel's own default is 30 s).</summary>
    internal static readonly TimeSpan RequestHeadersTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a connection may idle before its first request or between requests (Kestrel's own default is 130 s). A
    /// scraper whose interval is longer connects again for each scrape, which costs it a TCP handshake.
    /// </summary>
    internal static readonly TimeSpan KeepAliveTimeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long a scraper may take to read its body: one that reads a few hundred bytes a second would hold its answer's
    /// place among <see cref="MaxAnswersInFlight"/>, and its connection, for hours. Prometheus gives up on a scrape after its
    /// scrape_timeout (10 s by default).
    /// </summary>
    internal static readonly TimeSpan DefaultAnswerTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The time <see cref="Dispose"/> gives scrapes in flight to be answered before it closes their connections.</summary>
    internal static readonly TimeSpan AnswersDrainTimeout = TimeSpan.FromSeconds(5);

    private readonly MetricsExposition _exposition = new();
    private readonly CancellationTokenSource _stopping = new();
    private WebApplication? _server;
    private IDisposable? _metrics;
    private int _answering;
    private int _disposed;

    private MetricsEndpoint()
    {
    }

    /// <summary>
    /// Starts serving <paramref name="stats"/> at <c>http://<paramref name="host"/>:<paramref name="port"/>/metrics</c>.
    /// The caller keeps ownership of <paramref name="stats"/>; dispose the endpoint before it.
    /// </summary>
    /// <exception cref="IOException">The port is in use.</exception>
    /// <exception cref="System.Net.Sockets.SocketException">The host does not resolve, or its address cannot be listened on.</exception>
    /// <exception cref="ArgumentException">The host is none that <see cref="MetricsHost"/> reads.</exception>
    public static MetricsEndpoint Start(RoutingStats stats, string host, int port, string? layer = null) =>
        Start(meters => new RoutingStatsMetrics(stats, layer, meterFactory: meters), host, port);

    /// <summary>
    /// Starts serving the model <paramref name="stats"/> with bounded cardinality (<see cref="ModelRoutingStatsMetrics"/>):
    /// <paramref name="topExperts"/> hottest and coldest experts per layer, per-expert series only with <paramref name="expertSeries"/>,
    /// the balance over the window's newest <paramref name="recentSteps"/> steps, and over <paramref name="epSize"/> EP ranks, where given.
    /// </summary>
    /// <exception cref="IOException">The port is in use.</exception>
    /// <exception cref="System.Net.Sockets.SocketException">The host does not resolve, or its address cannot be listened on.</exception>
    /// <exception cref="ArgumentException">The host is none that <see cref="MetricsHost"/> reads.</exception>
    public static MetricsEndpoint Start(ModelRoutingStats stats, string host, int port, int topExperts, bool expertSeries, int? recentSteps = null, int? epSize = null) =>
        Start(meters => new ModelRoutingStatsMetrics(stats, topExperts, expertSeries, meterFactory: meters, recentSteps: recentSteps, epSize: epSize), host, port);

    /// <summary>Starts serving <paramref name="stats"/> with Kestrel's limits as <paramref name="limits"/> sets them (tests shorten them).</summary>
    internal static MetricsEndpoint Start(RoutingStats stats, string host, int port, Action<KestrelServerLimits> limits) =>
        Start(meters => new RoutingStatsMetrics(stats, meterFactory: meters), host, port, limits);

    /// <summary>Starts serving the instruments that <paramref name="publish"/> creates through the meter factory it is given (tests publish their own).</summary>
    internal static MetricsEndpoint Start(Func<System.Diagnostics.Metrics.IMeterFactory, IDisposable> publish, string host, int port, Action<KestrelServerLimits>? limits = null)
    {
        var where = MetricsHost.Parse(host);
        var endpoint = new MetricsEndpoint();
        try
        {
            endpoint._metrics = publish(endpoint._exposition.Meters);
            endpoint._server = Server(where, port, limits, endpoint.AnswerAsync);
            endpoint._server.StartAsync().GetAwaiter().GetResult();
        }
        catch
        {
            endpoint.Dispose();
            throw;
        }

        return endpoint;
    }

    /// <summary>
    /// A Kestrel server alone: no configuration files, environment variables or logging of ASP.NET Core's (a tool's
    /// endpoint is placed by its options, and its standard error is the operator's), and no handlers of Ctrl-C and
    /// SIGTERM of its own (the command's are the ones that end it, <see cref="Interruption"/>).
    /// </summary>
    private static WebApplication Server(MetricsHost host, int port, Action<KestrelServerLimits>? limits, RequestDelegate answer)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxConcurrentConnections = MaxConnections;
            kestrel.Limits.RequestHeadersTimeout = RequestHeadersTimeout;
            kestrel.Limits.KeepAliveTimeout = KeepAliveTimeout;
            limits?.Invoke(kestrel.Limits);
            host.Listen(kestrel, port);
        }).UseSockets(host.Bind);
        builder.Services.Configure<HostOptions>(options => options.ShutdownTimeout = AnswersDrainTimeout);
        builder.Services.AddSingleton<IHostLifetime, CommandLifetime>();
        var server = builder.Build();
        server.Run(answer);
        return server;
    }

    /// <summary>The number of scrapes being answered (past the path and method checks, not told to retry).</summary>
    internal int AnswersInFlight => Volatile.Read(ref _answering);

    /// <summary>How long a scraper may take to read its body before it is dropped (<see cref="DefaultAnswerTimeout"/>); tests shorten it.</summary>
    internal TimeSpan AnswerTimeout { get; set; } = DefaultAnswerTimeout;

    /// <summary>The collections made so far.</summary>
    internal int Collections => _exposition.Collections;

    /// <summary>The gate one collection holds at a time; tests hold it to keep a scrape in flight.</summary>
    internal SemaphoreSlim CollectionGate => _exposition.CollectionGate;

    /// <summary>
    /// Stops serving: scrapes waiting for a collection are answered 503 (the target is down) rather than with an empty
    /// page, which Prometheus would take for every series gone; those being answered get up to
    /// <see cref="AnswersDrainTimeout"/> to finish; new connections are refused.
    /// </summary>
    public void Dispose()
    {
        // Calls after the first are ignored, as IDisposable asks: a second Cancel would throw on the disposed source.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();
        if (_server is not null)
        {
            _server.StopAsync().GetAwaiter().GetResult();
            _server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        _metrics?.Dispose();
        _exposition.Dispose();
        _stopping.Dispose();
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

    private async Task AnswerAsync(HttpContext context)
    {
        var arrived = System.Diagnostics.Stopwatch.GetTimestamp();
        var request = context.Request;
        var response = context.Response;
        // Methods are case-sensitive (RFC 9110): "get" is not GET.
        var head = request.Method == HttpMethods.Head;
        if (request.Path.Value?.TrimEnd('/') != "/metrics")
        {
            response.StatusCode = 404;
            return;
        }

        if (!head && request.Method != HttpMethods.Get)
        {
            response.StatusCode = 405;
            response.Headers.Allow = "GET, HEAD";
            return;
        }

        if (Interlocked.Increment(ref _answering) > MaxAnswersInFlight)
        {
            Interlocked.Decrement(ref _answering);
            response.Headers.RetryAfter = "1";
            await AnswerUnavailableAsync(response, head, $"busy: {MaxAnswersInFlight} scrapes are being answered, the most at once; retry").ConfigureAwait(false);
            return;
        }

        try
        {
            await AnswerMetricsAsync(context, arrived, head).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _answering);
        }
    }

    private async Task AnswerMetricsAsync(HttpContext context, long arrived, bool head)
    {
        var response = context.Response;
        MetricsExposition.Collection collection;
        try
        {
            collection = await _exposition.CollectAsync(arrived, _stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            await AnswerUnavailableAsync(response, head, "the metrics endpoint is stopping").ConfigureAwait(false);
            return;
        }
        catch (Exception exception)
        {
            await AnswerUnavailableAsync(response, head, $"collection failed: {Reason(exception)}").ConfigureAwait(false);
            return;
        }

        // Prometheus asks for gzip: a large model's per-expert series are megabytes of text.
        var gzip = AcceptsGzip(context.Request.Headers.AcceptEncoding);
        var payload = gzip ? collection.Gzipped() : collection.Text;
        response.StatusCode = 200;
        response.ContentType = ContentType;
        response.Headers.Vary = "Accept-Encoding";
        if (gzip)
        {
            response.Headers.ContentEncoding = "gzip";
        }

        response.ContentLength = payload.Length;
        if (head)
        {
            return;
        }

        using var late = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        late.CancelAfter(AnswerTimeout);
        try
        {
            await response.Body.WriteAsync(payload, late.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Past the timeout, or the scraper went away: the connection is closed under the body.
            context.Abort();
        }
        catch (IOException)
        {
            // The scraper went away, or the endpoint stopped, in the middle of the body: nothing more to answer.
        }
    }

    /// <summary>
    /// What made a collection fail, in one line: each distinct reason its instruments gave, not "One or more errors
    /// occurred", each as the command line prints an error (<see cref="ErrorText.Of"/>).
    /// </summary>
    internal static string Reason(Exception exception) =>
        exception is AggregateException aggregate
            ? string.Join("; ", aggregate.Flatten().InnerExceptions.Select(ErrorText.Of).Distinct())
            : ErrorText.Of(exception);

    private static async Task AnswerUnavailableAsync(HttpResponse response, bool head, string reason)
    {
        var message = Encoding.UTF8.GetBytes(reason + "\n");
        response.StatusCode = 503;
        response.ContentType = "text/plain; charset=utf-8";
        response.ContentLength = message.Length;
        if (!head)
        {
            try
            {
                await response.Body.WriteAsync(message, CancellationToken.None).ConfigureAwait(false);
            }
            catch (IOException)
            {
                // The scraper went away: nothing to answer.
            }
        }
    }

    /// <summary>The host's lifetime as the command has it: started and stopped by the endpoint alone.</summary>
    private sealed class CommandLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
