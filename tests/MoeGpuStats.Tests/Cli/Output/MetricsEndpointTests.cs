using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Engines;
using static MoeGpuStats.Tests.Support.PrometheusText;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>The CLI's Prometheus endpoint (<see cref="MetricsEndpoint"/>), scraped over HTTP on loopback and parsed as the text format: one layer's statistics and a model's bounded series.</summary>
public sealed class MetricsEndpointTests
{
    private const int Layers = 3;
    private const int Tokens = 6;
    private const int TopK = 2;
    private const int Experts = 8;

    private static readonly string[] Counters =
        ["moegpustats_moegs_routings", "moegpustats_moegs_tokens", "moegpustats_moegs_tokens_dropped", "moegpustats_moegs_expert_ids_invalid", "moegpustats_moegs_expert_tokens"];

    [Fact]
    public async Task BothLoopbackNamesServeCountersAndAHistogramOfEveryLatency()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = RoutingStats.OnDevice(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = 3 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();
        stats.RecordRouting([0, 0, 1, 2, 2, 2, 7, 1], tokens: 4, topK: 2);
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [3, 0, 1], TotalTokens = 5, TokensDropped = 1 });
        for (var i = 0; i < 300; i++)
        {
            stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(i % 40));
        }

        // Latencies recorded between scrapes count too, not only those after the first one.
        var first = Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel));
        for (var i = 0; i < 200; i++)
        {
            stats.RecordRoutingLatency(TimeSpan.FromMicroseconds(37 * i));
        }

        var second = Parse(await http.GetStringAsync($"http://localhost:{port}/metrics", cancel));

        Assert.Equal(300, first.Samples["moegpustats_moegs_routing_latency_seconds_count"]);
        foreach (var scrape in new[] { first, second })
        {
            foreach (var counter in Counters)
            {
                Assert.Equal("counter", scrape.Types[$"{counter}_total"]);
                Assert.DoesNotContain(counter, scrape.Types.Keys);
            }

            Assert.Equal(2, scrape.Samples["moegpustats_moegs_routings_total"]);
            Assert.Equal(9, scrape.Samples["moegpustats_moegs_tokens_total"]);
            Assert.Equal(1, scrape.Samples["moegpustats_moegs_tokens_dropped_total"]);
            Assert.Equal(1, scrape.Samples["moegpustats_moegs_expert_ids_invalid_total"]);
            Assert.Equal(5, scrape.Samples["moegpustats_moegs_expert_tokens_total{expert=\"0\"}"]);
            Assert.Equal(2, scrape.Samples["moegpustats_moegs_expert_tokens_total{expert=\"1\"}"]);
            Assert.Equal(4, scrape.Samples["moegpustats_moegs_expert_tokens_total{expert=\"2\"}"]);
            Assert.Equal("gauge", scrape.Types["moegpustats_moegs_routing_efficiency_percent"]);
            Assert.Equal("gauge", scrape.Types["moegpustats_moegs_utilization_cv"]);
            Assert.Equal("histogram", scrape.Types["moegpustats_moegs_routing_latency_seconds"]);
            Assert.Equal(
                scrape.Samples["moegpustats_moegs_routing_latency_seconds_count"],
                scrape.Samples["moegpustats_moegs_routing_latency_seconds_bucket{le=\"+Inf\"}"]);
        }

        Assert.Equal(stats.RoutingLatencyStats.TotalMeasurements, (ulong)second.Samples["moegpustats_moegs_routing_latency_seconds_count"]);
        Assert.Equal(stats.RoutingLatencyStats.TotalLatencyMs / 1_000, second.Samples["moegpustats_moegs_routing_latency_seconds_sum"], 9);
        // Bucket "le 1 ms": the first batch's 0 and 1 ms (8 each of 300) and the second's 0-1 ms (28 of 200).
        Assert.Equal(8 + 8 + 28, second.Samples["moegpustats_moegs_routing_latency_seconds_bucket{le=\"0.001\"}"]);
    }

    /// <summary>
    /// A latency recorded while a scrape is written waits for the next one: each scrape's histogram is whole, its
    /// _count the +Inf bucket's, as the text format requires, while another thread records latencies without pause
    /// (prometheus-net sums the buckets for _count and reads them again for the buckets).
    /// </summary>
    [Fact]
    public async Task AHistogramRecordedDuringAScrapeIsWholeInIt()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();
        using var stop = new CancellationTokenSource();

        // The histogram's series appear with its first latency, which the recorder's task, started late on a loaded
        // machine, may not have recorded before the first scrape.
        stats.RecordRoutingLatency(TimeSpan.FromMicroseconds(1));
        var recorder = Task.Run(
            () =>
            {
                for (var i = 0; !stop.IsCancellationRequested; i++)
                {
                    stats.RecordRoutingLatency(TimeSpan.FromMicroseconds(i % 20_000));
                }
            },
            cancel);

        try
        {
            for (var scrape = 0; scrape < 100; scrape++)
            {
                var samples = Parse(await http.GetStringAsync($"http://localhost:{port}/metrics", cancel)).Samples;
                Assert.Equal(
                    samples["moegpustats_moegs_routing_latency_seconds_count"],
                    samples["moegpustats_moegs_routing_latency_seconds_bucket{le=\"+Inf\"}"]);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await recorder;
        }
    }

    /// <summary>One layer's statistics served with its name carry it as the label <c>layer</c> on every series.</summary>
    [Fact]
    public async Task ALayersStatisticsAreLabelledWithIt()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting([0, 1, 1], tokens: 3, topK: 1);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port, layer: "7");
        using var http = new HttpClient();

        var scrape = Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", TestContext.Current.CancellationToken));

        Assert.Equal(3, scrape.Samples["moegpustats_moegs_tokens_total{layer=\"7\"}"]);
        Assert.Equal(2, scrape.Samples["moegpustats_moegs_expert_tokens_total{expert=\"1\",layer=\"7\"}"]);
        Assert.DoesNotContain(scrape.Samples.Keys, key => key.StartsWith("moegpustats_moegs_tokens_total", StringComparison.Ordinal) && !key.Contains("layer=", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ACounterResetIsServedAsALowerTotal()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = RoutingStats.OnDevice(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "127.0.0.1", port);
        using var http = new HttpClient();
        stats.RecordRouting([0, 1, 1, 1], tokens: 4, topK: 1);
        var before = Parse(await http.GetStringAsync($"http://localhost:{port}/metrics", cancel));
        stats.Reset();
        stats.RecordRouting([0, 0], tokens: 2, topK: 1);
        await Task.Delay(TimeSpan.FromSeconds(1.1), cancel); // past the metrics' 1 s refresh interval
        var after = Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel));

        Assert.Equal(4, before.Samples["moegpustats_moegs_tokens_total"]);
        Assert.Equal(2, after.Samples["moegpustats_moegs_tokens_total"]);
        Assert.Equal(0, after.Samples["moegpustats_moegs_expert_tokens_total{expert=\"1\"}"]);
    }

    [Fact]
    public async Task TheEndpointIsBoundToLoopbackOnly()
    {
        var outside = AddressOutsideLoopback();

        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var client = new TcpClient();
        await Assert.ThrowsAnyAsync<SocketException>(async () => await client.ConnectAsync(outside, port, TestContext.Current.CancellationToken));
    }

    /// <summary>An IPv6 address, in brackets or not, the unspecified addresses and <c>+</c> are served, each reached at the loopback address it covers.</summary>
    [Theory]
    [InlineData("::1", "[::1]")]
    [InlineData("[::1]", "[::1]")]
    [InlineData("::", "[::1]")]
    [InlineData("0.0.0.0", "127.0.0.1")]
    [InlineData("+", "127.0.0.1")]
    public async Task AnAddressOrEveryInterfaceIsServed(string host, string reachedAt)
    {
        if (reachedAt.StartsWith('[') && !LoopbackServesIPv6())
        {
            Assert.Skip("This machine has no IPv6 loopback address.");
        }

        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting([0, 1, 1], tokens: 3, topK: 1);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, host, port);
        using var http = new HttpClient();

        var scrape = Parse(await http.GetStringAsync($"http://{reachedAt}:{port}/metrics", TestContext.Current.CancellationToken));

        Assert.Equal(3, scrape.Samples["moegpustats_moegs_tokens_total"]);
    }

    /// <summary><c>+</c> serves every interface, not loopback alone: a scraper on another machine reaches it at this machine's address.</summary>
    [Fact]
    public async Task EveryInterfaceIsServedBeyondLoopback()
    {
        var outside = AddressOutsideLoopback();

        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting([0, 1, 1], tokens: 3, topK: 1);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "+", port);
        using var http = new HttpClient();

        var scrape = Parse(await http.GetStringAsync($"http://{outside}:{port}/metrics", TestContext.Current.CancellationToken));

        Assert.Equal(3, scrape.Samples["moegpustats_moegs_tokens_total"]);
    }

    /// <summary>This machine's first IPv4 address outside loopback, on an interface that is up; the test skips where there is none.</summary>
    private static IPAddress AddressOutsideLoopback()
    {
        var outside = NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus == OperationalStatus.Up)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses)
            .Select(a => a.Address)
            .FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(a));
        if (outside is null)
        {
            Assert.Skip("This machine has no IPv4 address outside loopback.");
        }

        return outside;
    }

    private static bool LoopbackServesIPv6()
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    [Fact]
    public async Task ManyScrapesAtOnceAllSucceed()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = RoutingStats.OnDevice(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = 4 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();
        var deadline = Stopwatch.StartNew();
        var recorder = Task.Run(
            () =>
            {
                var records = 0;
                while (deadline.Elapsed < TimeSpan.FromSeconds(1.5))
                {
                    stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
                    stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(1));
                    records++;
                }

                return records;
            },
            cancel);
        var scrapers = Enumerable.Range(0, 8).Select(s => Task.Run(
            async () =>
            {
                var scrapes = 0;
                while (deadline.Elapsed < TimeSpan.FromSeconds(1.5))
                {
                    var host = s % 2 == 0 ? "localhost" : "127.0.0.1";
                    using var response = await http.GetAsync($"http://{host}:{port}/metrics", cancel);
                    Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                    var scrape = Parse(await response.Content.ReadAsStringAsync(cancel));
                    Assert.Equal(2 * scrape.Samples["moegpustats_moegs_routings_total"], scrape.Samples["moegpustats_moegs_tokens_total"]);
                    scrapes++;
                }

                return scrapes;
            },
            cancel)).ToArray();

        var records = await recorder;
        var scrapes = await Task.WhenAll(scrapers);
        Assert.All(scrapes, count => Assert.True(count > 0));
        var last = Parse(await http.GetStringAsync($"http://localhost:{port}/metrics", cancel));
        Assert.Equal(records, last.Samples["moegpustats_moegs_routing_latency_seconds_count"]);
    }

    [Fact]
    public async Task AScrapeInFlightWhenTheEndpointStopsIsAnsweredUnavailable()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();

        // Holding the collection gate keeps the scrape waiting until the endpoint stops under it.
        await endpoint.CollectionGate.WaitAsync(cancel);
        var scrape = http.GetAsync($"http://127.0.0.1:{port}/metrics", cancel);
        await UntilAsync(() => endpoint.AnswersInFlight > 0, Stopwatch.StartNew(), () => "The scrape never reached the endpoint.", cancel);

        await Task.Run(endpoint.Dispose, cancel);

        using var response = await scrape;
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("the metrics endpoint is stopping\n", await response.Content.ReadAsStringAsync(cancel));
    }

    /// <summary>
    /// Scrapes past the most answered at once are told to retry without a collection (a HEAD without a body): each
    /// answer holds its body until its scraper reads it. Once those in flight are answered, the next is served.
    /// </summary>
    [Fact]
    public async Task ScrapesPastTheMostAnsweredAtOnceAreToldToRetry()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();

        // Holding the collection gate keeps the scrapes in flight.
        await endpoint.CollectionGate.WaitAsync(cancel);
        var held = Enumerable.Range(0, MetricsEndpoint.MaxAnswersInFlight).Select(_ => http.GetAsync($"http://127.0.0.1:{port}/metrics", cancel)).ToArray();
        await ScrapesReachedAsync(endpoint, MetricsEndpoint.MaxAnswersInFlight, Stopwatch.StartNew(), cancel);

        // Bounded: were it served, it would wait behind the held gate.
        using var patience = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        patience.CancelAfter(Patience.GoAhead);
        using (var busy = await http.GetAsync($"http://127.0.0.1:{port}/metrics", patience.Token))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, busy.StatusCode);
            Assert.Equal("1", busy.Headers.RetryAfter?.Delta?.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal($"busy: {MetricsEndpoint.MaxAnswersInFlight} scrapes are being answered, the most at once; retry\n", await busy.Content.ReadAsStringAsync(cancel));
        }

        // HEAD gets the headers alone: a body after them would be read as the start of the next response.
        using (var head = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"http://127.0.0.1:{port}/metrics"), patience.Token))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, head.StatusCode);
            Assert.Empty(await head.Content.ReadAsByteArrayAsync(cancel));
        }

        endpoint.CollectionGate.Release();
        foreach (var scrape in held)
        {
            using var response = await scrape;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // An answer leaves the count just after its scraper has the response.
        await AnswersEnd(endpoint, cancel);

        using var after = await http.GetAsync($"http://127.0.0.1:{port}/metrics", cancel);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    /// <summary>
    /// Scrapes that wait for the collection together take one collection, begun after they all arrived, and the same
    /// body (gzipped once for those that ask): each would otherwise hold a body of its own.
    /// </summary>
    [Fact]
    public async Task ScrapesWaitingTogetherShareOneCollection()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 1, 3], tokens: 2, topK: 2);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var plain = new HttpClient();
        using var gzip = new HttpClient(new HttpClientHandler { AutomaticDecompression = DecompressionMethods.GZip });

        await endpoint.CollectionGate.WaitAsync(cancel);
        var scrapes = Enumerable.Range(0, 6).Select(i => (i % 2 == 0 ? plain : gzip).GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel)).ToArray();
        await ScrapesReachedAsync(endpoint, scrapes.Length, Stopwatch.StartNew(), cancel);

        // Recorded before the collection begins, so every scrape's body counts it.
        stats.RecordRouting([2, 2], tokens: 1, topK: 2);
        var before = endpoint.Collections;
        endpoint.CollectionGate.Release();
        var bodies = await Task.WhenAll(scrapes);

        Assert.Equal(before + 1, endpoint.Collections);
        Assert.Single(bodies.Distinct());
        Assert.Equal(2, Parse(bodies[0]).Samples["moegpustats_moegs_routings_total"]);

        // A scrape arriving after that collection began gets one of its own.
        Assert.Equal(2, Parse(await plain.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel)).Samples["moegpustats_moegs_routings_total"]);
        Assert.Equal(before + 2, endpoint.Collections);
    }

    /// <summary>
    /// A scrape that arrives after a collection began, while that collection is under way, gets a collection of its own
    /// once the gate is free, not the one it saw begin (which may miss what was recorded just before it arrived).
    /// </summary>
    [Fact]
    public async Task AScrapeArrivingAfterACollectionBeganGetsANewOne()
    {
        var cancel = TestContext.Current.CancellationToken;
        var gate = new Lock();
        using var stats = new RoutingStats(new ManagedRoutingEngine(new RoutingStatsOptions { Experts = 2 }, gate: gate));
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();

        // The statistics' lock, held on a thread of its own, keeps the first scrape inside its collection.
        using var held = new HeldLock(gate, cancel);
        var before = endpoint.Collections;
        var first = http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel);
        var waited = Stopwatch.StartNew();
        await InsideItsCollectionAsync(endpoint, waited, cancel);

        var second = http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel);
        await ScrapesReachedAsync(endpoint, 2, waited, cancel);

        held.Release();
        await Task.WhenAll(first, second);

        Assert.Equal(before + 2, endpoint.Collections);
    }

    /// <summary>
    /// The endpoint serves its own statistics' instruments alone: statistics published elsewhere in the process (on the
    /// shared meter, with instruments of the same names) reach neither its counters nor its latency histogram.
    /// </summary>
    [Fact]
    public async Task OnlyTheEndpointsOwnStatisticsAreServed()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var other = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var otherMetrics = new MoeGpuStats.Telemetry.RoutingStatsMetrics(other);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();
        stats.RecordRouting([0, 1], tokens: 2, topK: 1);
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(2));
        for (var i = 0; i < 3; i++)
        {
            other.RecordRouting([1, 1, 1, 1, 1], tokens: 5, topK: 1);
            other.RecordRoutingLatency(TimeSpan.FromMilliseconds(3));
        }

        var scrape = Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel));

        Assert.Equal(1, scrape.Samples["moegpustats_moegs_routings_total"]);
        Assert.Equal(2, scrape.Samples["moegpustats_moegs_tokens_total"]);
        Assert.Equal(1, scrape.Samples["moegpustats_moegs_expert_tokens_total{expert=\"1\"}"]);
        Assert.Equal(1, scrape.Samples["moegpustats_moegs_routing_latency_seconds_count"]);
        Assert.Equal(0.002, scrape.Samples["moegpustats_moegs_routing_latency_seconds_sum"], 9);
    }

    /// <summary>
    /// A scraper that stops reading its body is dropped at the answer timeout: its connection is closed under the body and
    /// its place among the answers in flight freed, where it held both (and the body) for as long as it stayed connected.
    /// </summary>
    [Fact]
    public async Task AScraperThatStopsReadingIsDroppedAtTheTimeout()
    {
        var cancel = TestContext.Current.CancellationToken;
        // A series per expert makes a body of megabytes, more than loopback's socket buffers take in.
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 200_000 });
        stats.RecordRouting([0, 199_999], tokens: 1, topK: 2);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();
        var length = (await http.GetByteArrayAsync($"http://127.0.0.1:{port}/metrics", cancel)).Length;
        endpoint.AnswerTimeout = TimeSpan.FromSeconds(1);

        using var stalled = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveBufferSize = 4096 };
        await stalled.ConnectAsync(IPAddress.Loopback, port, cancel);
        await stalled.SendAsync(System.Text.Encoding.ASCII.GetBytes($"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"), cancel);
        var buffer = new byte[4096];
        var received = (long)await stalled.ReceiveAsync(buffer, cancel);
        Assert.StartsWith("HTTP/1.1 200", System.Text.Encoding.ASCII.GetString(buffer, 0, 12));

        await AnswersEnd(endpoint, cancel);

        // Read on: the connection ends short of the body, closed under it.
        try
        {
            int read;
            while ((read = await stalled.ReceiveAsync(buffer, cancel)) > 0)
            {
                received += read;
            }
        }
        catch (SocketException reset) when (reset.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        Assert.True(received < length, $"{received:N0} bytes received of a {length:N0}-byte body");
    }

    private static Task AnswersEnd(MetricsEndpoint endpoint, CancellationToken cancel) =>
        UntilAsync(() => endpoint.AnswersInFlight == 0, Stopwatch.StartNew(), () => $"{endpoint.AnswersInFlight} answers never ended.", cancel);

    private static Task ScrapesReachedAsync(MetricsEndpoint endpoint, int scrapes, Stopwatch waited, CancellationToken cancel) =>
        UntilAsync(() => endpoint.AnswersInFlight >= scrapes, waited, () => $"{endpoint.AnswersInFlight} scrapes reached the endpoint.", cancel);

    /// <summary>Returns once <paramref name="done"/>, checked every 10 ms; fails with <paramref name="failure"/> after <see cref="Patience.GoAhead"/> of <paramref name="waited"/>.</summary>
    private static async Task UntilAsync(Func<bool> done, Stopwatch waited, Func<string> failure, CancellationToken cancel)
    {
        while (!done())
        {
            Assert.True(waited.Elapsed < Patience.GoAhead, failure());
            await Task.Delay(10, cancel);
        }
    }

    [Fact]
    public async Task ScrapesArrivingWhileTheEndpointWaitsForOneInFlightAreNotAnsweredEmpty()
    {
        var cancel = TestContext.Current.CancellationToken;
        var gate = new Lock();
        using var stats = new RoutingStats(new ManagedRoutingEngine(new RoutingStatsOptions { Experts = 2 }, gate: gate));
        var port = FreePort();
        var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();

        // The statistics' lock, held on a thread of its own, keeps the first scrape inside its
        // collection, so Dispose waits for it while the next scrapes arrive.
        using var held = new HeldLock(gate, cancel);
        var inFlight = http.GetAsync($"http://127.0.0.1:{port}/metrics", cancel);
        await InsideItsCollectionAsync(endpoint, Stopwatch.StartNew(), cancel);

        var disposing = Task.Run(endpoint.Dispose, cancel);

        // One after another: a scrape that reaches the endpoint before it stops accepting waits for the collection
        // and is answered 503 once the stop begins; one after that is refused, or reset where the server accepted
        // its connection as it stopped (HttpClient then throws the socket's error itself where it asks the
        // closed socket for its peer, as on the GPU machine). None gets an empty page.
        for (var i = 0; i < 3; i++)
        {
            try
            {
                using var during = await http.GetAsync($"http://127.0.0.1:{port}/metrics", cancel);
                Assert.Equal(HttpStatusCode.ServiceUnavailable, during.StatusCode);
                Assert.Equal("the metrics endpoint is stopping\n", await during.Content.ReadAsStringAsync(cancel));
            }
            catch (Exception refused) when (refused is SocketException or HttpRequestException { InnerException: SocketException or IOException })
            {
            }
        }

        Assert.False(disposing.IsCompleted);
        held.Release();
        await disposing;
        using var first = await inFlight;
        Assert.NotEqual(0, first.Content.Headers.ContentLength);
    }

    /// <summary>Returns once a scrape holds the collection gate, failing after <see cref="Patience.GoAhead"/> of <paramref name="waited"/>.</summary>
    private static Task InsideItsCollectionAsync(MetricsEndpoint endpoint, Stopwatch waited, CancellationToken cancel) =>
        UntilAsync(() => endpoint.CollectionGate.CurrentCount == 0, waited, () => "The scrape never reached its collection.", cancel);

    /// <summary>
    /// Connections past the most held at once are closed unanswered, not held (20,000 idle ones ended the process at the
    /// open-file limit), and one that sends no request, or not all of its headers, is closed in time; then scrapes are served again.
    /// </summary>
    [Fact]
    public async Task ConnectionsPastTheMostHeldAreClosedAndIdleOnesTimeOut()
    {
        var cancel = TestContext.Current.CancellationToken;
        const int Most = MetricsEndpoint.MaxConnections;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port, limits =>
        {
            // The endpoint's own timeouts, shortened for the test.
            Assert.Equal((MetricsEndpoint.KeepAliveTimeout, MetricsEndpoint.RequestHeadersTimeout), (limits.KeepAliveTimeout, limits.RequestHeadersTimeout));
            limits.KeepAliveTimeout = TimeSpan.FromSeconds(2);
            limits.RequestHeadersTimeout = TimeSpan.FromSeconds(2);
        });
        var idle = new List<Socket>();
        try
        {
            var opened = Stopwatch.StartNew();
            for (var i = 0; i < Most; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                idle.Add(socket);
                await socket.ConnectAsync(IPAddress.Loopback, port, cancel);

                // Half send nothing (the keep-alive timeout bounds them), half a request's first line alone (the headers' timeout).
                if (i % 2 == 1)
                {
                    await socket.SendAsync(System.Text.Encoding.ASCII.GetBytes("GET /metrics HTTP/1.1\r\n"), cancel);
                }
            }

            // Kestrel counts a connection once it has accepted it.
            await Task.Delay(500, cancel);
            using (var past = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
            {
                await past.ConnectAsync(IPAddress.Loopback, port, cancel);
                await past.SendAsync(System.Text.Encoding.ASCII.GetBytes("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"), cancel);
                Assert.Equal("", await ReceivedBeforeCloseAsync(past, TimeSpan.FromSeconds(1.5), cancel));
            }

            // Closed by the server before the test's own deadline: one that sent nothing without a word, one with late headers told so.
            for (var i = 0; i < Most; i++)
            {
                var received = await ReceivedBeforeCloseAsync(idle[i], TimeSpan.FromSeconds(10), cancel);
                Assert.True(i % 2 == 0 ? received == "" : received.StartsWith("HTTP/1.1 408 ", StringComparison.Ordinal), $"connection {i}: {received}");
            }

            Assert.True(opened.Elapsed >= TimeSpan.FromSeconds(2), $"idle connections closed after {opened.Elapsed}, before the timeouts");
            using var http = new HttpClient();
            using var response = await http.GetAsync($"http://127.0.0.1:{port}/metrics", cancel);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        finally
        {
            idle.ForEach(socket => socket.Dispose());
        }
    }

    /// <summary>What <paramref name="socket"/> receives until the server closes it; fails when it is still open after <paramref name="deadline"/>.</summary>
    private static async Task<string> ReceivedBeforeCloseAsync(Socket socket, TimeSpan deadline, CancellationToken cancel)
    {
        using var late = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        late.CancelAfter(deadline);
        var buffer = new byte[4096];
        var received = new MemoryStream();
        try
        {
            int read;
            while ((read = await socket.ReceiveAsync(buffer, SocketFlags.None, late.Token)) > 0)
            {
                received.Write(buffer, 0, read);
            }
        }
        catch (SocketException reset) when (reset.SocketErrorCode == SocketError.ConnectionReset)
        {
        }
        catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
        {
            Assert.Fail($"the connection was still open after {deadline}, {received.Length} bytes received");
        }

        return System.Text.Encoding.ASCII.GetString(received.ToArray());
    }

    [Fact]
    public async Task DisposingTwiceIsHarmless()
    {
        // IDisposable's contract: calls after the first are ignored (the second threw ObjectDisposedException).
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using (var http = new HttpClient())
        {
            using var response = await http.GetAsync($"http://127.0.0.1:{port}/metrics", cancel);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        endpoint.Dispose();
        endpoint.Dispose();
    }

    /// <summary>
    /// A reading that fails (a device error, here an instrument that throws) is answered 503 with its reason in one line, as
    /// a target that is down: not 200 with the last values read, which Prometheus would take for frozen healthy series, nor
    /// an empty page, which it would take for every series gone. Once the reading succeeds again, so does the scrape.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task AFailedReadingIsAnsweredUnavailableWithItsReason(bool scrapedBefore)
    {
        var cancel = TestContext.Current.CancellationToken;
        var failing = !scrapedBefore;
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(
            meters =>
            {
                var meter = meters.Create(new System.Diagnostics.Metrics.MeterOptions("MoeGpuStats"));
                meter.CreateObservableGauge("moegs.test.reading", () => failing ? throw new InvalidOperationException("the device is gone.") : 1.0);
                return meter;
            },
            "localhost",
            port);
        using var http = new HttpClient();
        if (scrapedBefore)
        {
            Assert.Contains("moegpustats_moegs_test_reading 1", await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel), StringComparison.Ordinal);
            failing = true;
        }

        using (var response = await http.GetAsync($"http://127.0.0.1:{port}/metrics", cancel))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("collection failed: the device is gone.\n", await response.Content.ReadAsStringAsync(cancel));
        }

        failing = false;
        Assert.Contains("moegpustats_moegs_test_reading 1", await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel), StringComparison.Ordinal);
    }

    /// <summary>
    /// A collection's reasons, one line: each distinct one once, joined; a lone exception's own message; each as the
    /// command line prints an error (a line break shown as <c>\n</c>, .NET's parameter name dropped).
    /// </summary>
    [Fact]
    public void AFailedCollectionsReasonIsEachDistinctOneOnce()
    {
        var failures = new AggregateException(
            new ObjectDisposedException(null, "gone."),
            new AggregateException(new InvalidOperationException("two\nlines."), new ObjectDisposedException(null, "gone."), new ArgumentOutOfRangeException("layer", 9, "layer = 9: out of range.")));

        Assert.Equal(@"gone.; two\nlines.; layer = 9: out of range.", MetricsEndpoint.Reason(failures));
        Assert.Equal("alone.", MetricsEndpoint.Reason(new IOException("alone.")));
        Assert.Equal("alone.", MetricsEndpoint.Reason(new ArgumentException("alone.", "stats")));
    }

    [Fact]
    public void APortInUseIsAnIOError()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        Assert.ThrowsAny<IOException>(() => MetricsEndpoint.Start(stats, "localhost", port));
    }

    [Fact]
    public async Task AnotherPathIsNotFound()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();
        using var response = await http.GetAsync($"http://127.0.0.1:{port}/other", TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    /// <summary><c>/metrics/</c> is the same path: Prometheus' <c>metrics_path</c> is sometimes written with the slash.</summary>
    [Fact]
    public async Task TheMetricsPathMayEndInASlash()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting([0, 1, 1], tokens: 3, topK: 1);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();

        using var response = await http.GetAsync($"http://127.0.0.1:{port}/metrics/", cancel);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(3, Parse(await response.Content.ReadAsStringAsync(cancel)).Samples["moegpustats_moegs_tokens_total"]);
    }

    /// <summary>
    /// An answer names the text format's media type in full (its version, and UTF-8, for label values that are not
    /// ASCII), its exact length (no chunks), that it varies by Accept-Encoding (a cache between must not serve gzip to a
    /// scraper that did not ask for it), and not the server's name; a HEAD answer's headers are those of the GET it
    /// stands for, its length the body's, plain or gzipped.
    /// </summary>
    [Fact]
    public async Task AnAnswersHeadersNameTheFormatTheLengthAndTheEncodingItVariesBy()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 16 });
        stats.RecordRouting([.. Enumerable.Range(0, 32).Select(i => i % 16)], tokens: 16, topK: 2);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient(new HttpClientHandler { AutomaticDecompression = DecompressionMethods.None });

        foreach (var gzip in new[] { false, true })
        {
            string[] encoding = gzip ? ["gzip"] : [];
            using var get = await http.SendAsync(Request(HttpMethod.Get, gzip), cancel);
            var body = await get.Content.ReadAsByteArrayAsync(cancel);
            using var head = await http.SendAsync(Request(HttpMethod.Head, gzip), cancel);

            foreach (var response in new[] { get, head })
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
                Assert.Equal(body.Length, response.Content.Headers.ContentLength);
                Assert.Null(response.Headers.TransferEncodingChunked);
                Assert.Equal(["Accept-Encoding"], response.Headers.Vary);
                Assert.Empty(response.Headers.Server);
                Assert.Equal(encoding, response.Content.Headers.ContentEncoding);
            }

            Assert.Empty(await head.Content.ReadAsByteArrayAsync(cancel));
        }

        HttpRequestMessage Request(HttpMethod method, bool gzip)
        {
            var request = new HttpRequestMessage(method, $"http://127.0.0.1:{port}/metrics");
            if (gzip)
            {
                request.Headers.AcceptEncoding.ParseAdd("gzip");
            }

            return request;
        }
    }

    [Fact]
    public async Task AHeadAnswerHasNoBodySoTheConnectionServesTheNextRequest()
    {
        // A body after a HEAD answer is read by a keep-alive client as the start of its next answer.
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, cancel);
        var connection = client.GetStream();

        var head = await HeadersAsync(connection, "HEAD /metrics", cancel);
        var next = await HeadersAsync(connection, "GET /other", cancel);

        Assert.StartsWith("HTTP/1.1 200 ", head, StringComparison.Ordinal);
        Assert.Contains("Content-Type: text/plain; version=0.0.4", head, StringComparison.Ordinal);
        Assert.DoesNotContain("Content-Length: 0\r\n", head, StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 404 ", next, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AMethodOtherThanGetOrHeadIsNotAllowed()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();
        using var content = new StringContent("");

        using var response = await http.PostAsync($"http://127.0.0.1:{port}/metrics", content, cancel);

        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
        Assert.Equal(["GET", "HEAD"], response.Content.Headers.Allow);
    }

    /// <summary>Methods are case-sensitive (RFC 9110): a lower-case <c>get</c> is not GET.</summary>
    [Fact]
    public async Task AMethodInLowerCaseIsNotGet()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port, cancel);

        var answer = await HeadersAsync(client.GetStream(), "get /metrics", cancel);

        Assert.StartsWith("HTTP/1.1 405 ", answer, StringComparison.Ordinal);
    }

    /// <summary>The address 127.0.0.1 is served on that address alone: another program may hold the port on IPv6's loopback.</summary>
    [Fact]
    public void AnIPv4AddressLeavesIPv6Alone()
    {
        if (!LoopbackServesIPv6())
        {
            Assert.Skip("This machine has no IPv6 loopback address.");
        }

        using var taken = new Socket(AddressFamily.InterNetworkV6, SocketType.Stream, ProtocolType.Tcp) { DualMode = false };
        taken.Bind(new IPEndPoint(IPAddress.IPv6Loopback, 0));
        taken.Listen();
        var port = ((IPEndPoint)taken.LocalEndPoint!).Port;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });

        using var endpoint = MetricsEndpoint.Start(stats, "127.0.0.1", port);

        Assert.ThrowsAny<IOException>(() => MetricsEndpoint.Start(stats, "localhost", port).Dispose());
    }

    /// <summary>
    /// <c>::</c> is every IPv6 address alone, as the command line says and as <c>0.0.0.0</c> is IPv4's: Kestrel's own
    /// socket there is dual-stack, which also served 127.0.0.1 and left another program's IPv4 listener no port.
    /// </summary>
    [Fact]
    public async Task IPv6sUnspecifiedAddressLeavesIPv4Alone()
    {
        if (!LoopbackServesIPv6())
        {
            Assert.Skip("This machine has no IPv6 loopback address.");
        }

        var cancel = TestContext.Current.CancellationToken;
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        var port = ((IPEndPoint)taken.LocalEndPoint!).Port;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });

        using var endpoint = MetricsEndpoint.Start(stats, "::", port);

        using var http = new HttpClient();
        Assert.Contains("moegpustats_moegs_tokens_total", await http.GetStringAsync($"http://[::1]:{port}/metrics", cancel), StringComparison.Ordinal);
        taken.Dispose();
        using var client = new TcpClient();
        await Assert.ThrowsAnyAsync<SocketException>(async () => await client.ConnectAsync(IPAddress.Loopback, port, cancel));
    }

    /// <summary>A scraper that accepts gzip (Prometheus does) gets the same text compressed; one that does not, plain text.</summary>
    [Fact]
    public async Task AScraperAcceptingGzipGetsTheTextCompressed()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 64 });
        stats.RecordRouting(Enumerable.Range(0, 128).Select(i => i % 64).ToArray(), tokens: 64, topK: 2);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient(new HttpClientHandler { AutomaticDecompression = DecompressionMethods.None });

        using var plain = await http.GetAsync($"http://127.0.0.1:{port}/metrics", cancel);
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{port}/metrics");
        request.Headers.AcceptEncoding.ParseAdd("gzip");
        using var gzipped = await http.SendAsync(request, cancel);

        var text = await plain.Content.ReadAsStringAsync(cancel);
        var compressed = await gzipped.Content.ReadAsByteArrayAsync(cancel);
        Assert.Empty(plain.Content.Headers.ContentEncoding);
        Assert.Equal(["gzip"], gzipped.Content.Headers.ContentEncoding);
        Assert.True(compressed.Length < text.Length / 4, $"{compressed.Length} bytes compressed of {text.Length}");
        using var unzip = new System.IO.Compression.GZipStream(new MemoryStream(compressed), System.IO.Compression.CompressionMode.Decompress);
        using var reader = new StreamReader(unzip);
        Assert.Equal(text, await reader.ReadToEndAsync(cancel));
    }

    [Theory]
    [InlineData("gzip", true)]
    [InlineData("deflate, gzip;q=0.5", true)]
    [InlineData("GZIP", true)]
    [InlineData("*", true)]
    [InlineData("gzip;q=0", false)]
    [InlineData("identity", false)]
    [InlineData("", false)]
    [InlineData(null, false)]
    [InlineData("gzip;q=nonsense", false)]
    [InlineData("gzip;q=0, *", false)]
    [InlineData("*, gzip;q=0", false)]
    [InlineData("*;q=0, gzip", true)]
    [InlineData("identity, *;q=0", false)]
    [InlineData("gzip, gzip;q=0", true)]
    public void AcceptEncodingIsReadAsHttpSaysForGzip(string? header, bool accepts) =>
        Assert.Equal(accepts, MetricsEndpoint.AcceptsGzip(header));

    [Fact]
    public async Task PrometheusScrapesTheStatistics()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 3 });
        stats.RecordRouting([0, 0, 1, 2, 2, 2, 7, 1], tokens: 4, topK: 2);
        var port = PrometheusText.FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();

        var text = await http.GetStringAsync($"http://localhost:{port}/metrics", TestContext.Current.CancellationToken);

        var samples = text.Split('\n')
            .Where(line => line.StartsWith("moegpustats_", StringComparison.Ordinal))
            .Select(line => line.Split(' '))
            .ToDictionary(parts => parts[0], parts => double.Parse(parts[1], CultureInfo.InvariantCulture));
        Assert.Equal(1, samples["moegpustats_moegs_routings_total"]);
        Assert.Equal(4, samples["moegpustats_moegs_tokens_total"]);
        Assert.Equal(1, samples["moegpustats_moegs_expert_ids_invalid_total"]);
        Assert.Equal(3, samples["moegpustats_moegs_expert_tokens_total{expert=\"2\"}"]);
        Assert.Equal(100, samples["moegpustats_moegs_routing_efficiency_percent"]);
    }

    /// <summary>The endpoint serves a model's bounded series, parsed here as Prometheus reads them.</summary>
    [Fact]
    public async Task PrometheusScrapesAModelsBoundedSeries()
    {
        using var stats = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts });
        var ids = ModelTrace.Ids(1, Layers, Tokens, seed: 6);
        stats.RecordStep(ids, Tokens, TopK);
        var port = PrometheusText.FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port, topExperts: 2, expertSeries: false);
        using var http = new HttpClient();

        var text = await http.GetStringAsync($"http://localhost:{port}/metrics", TestContext.Current.CancellationToken);

        var (_, samples) = PrometheusText.Parse(text);
        var summary = stats.Summary();
        Assert.Equal(1, samples["moegpustats_moegs_model_steps_total"]);
        Assert.Equal(summary.Window.MinBalancedness, samples["moegpustats_moegs_model_balancedness_min"], 12);
        Assert.Equal(summary.Window.P10Balancedness, samples["moegpustats_moegs_model_balancedness_p10"], 12);
        for (var l = 0; l < Layers; l++)
        {
            Assert.Equal(summary.Window.Layers[l].Balancedness, samples[$"moegpustats_moegs_layer_balancedness{{layer=\"{l}\"}}"], 12);
            Assert.Equal(summary.Window.Layers[l].HottestExpert, samples[$"moegpustats_moegs_layer_hot_expert{{layer=\"{l}\",position=\"1\"}}"]);
            Assert.Equal(summary.Window.Layers[l].Load, (ulong)samples[$"moegpustats_moegs_layer_slots_total{{layer=\"{l}\"}}"]);
        }

        Assert.Equal(summary.Window.MaxBalancedness, samples["moegpustats_moegs_model_balancedness_max"], 12);
        Assert.Equal(summary.Window.BestLayer, samples["moegpustats_moegs_model_best_layer"]);
        Assert.Equal(11 + (12 * Layers) + (4 * Layers * 2), samples.Count);
        Assert.DoesNotContain(samples.Keys, key => key.Contains("expert=", StringComparison.Ordinal));
    }

    /// <summary>A model's endpoint given an EP size serves the window's balance over ranks holding the experts in order.</summary>
    [Fact]
    public async Task AModelsEndpointServesTheBalanceOverEpRanks()
    {
        const int Ranks = 2;
        using var stats = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts });
        stats.RecordStep(ModelTrace.Ids(1, Layers, Tokens, seed: 6), Tokens, TopK);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port, topExperts: 0, expertSeries: false, epSize: Ranks);
        using var http = new HttpClient();

        var (types, samples) = Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", TestContext.Current.CancellationToken));

        var byRank = stats.Summary([.. Enumerable.Range(0, Experts).Select(e => e / (Experts / Ranks))]).Window;
        Assert.Equal("gauge", types["moegpustats_moegs_model_ep_balancedness_token_weighted"]);
        Assert.Equal(byRank.TokenWeightedBalancedness, samples["moegpustats_moegs_model_ep_balancedness_token_weighted"], 12);
        Assert.Equal(byRank.MinBalancedness, samples["moegpustats_moegs_model_ep_balancedness_min"], 12);
    }

    /// <summary>
    /// A gauge is served at its current value scrape after scrape, not its values summed: the second scrape of unchanged
    /// statistics serves the first's gauges, and a scrape after the statistics changed serves their new value.
    /// </summary>
    [Fact]
    public async Task GaugesAreServedAtTheirCurrentValueScrapeAfterScrape()
    {
        var cancel = TestContext.Current.CancellationToken;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 0, 1, 2], tokens: 4, topK: 1, loadBalanceLoss: 0.5f);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();

        var first = Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel));
        var second = Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel));
        stats.Reset();
        stats.RecordRouting([3, 3], tokens: 2, topK: 1, loadBalanceLoss: 0.25f);
        await Task.Delay(TimeSpan.FromSeconds(1.1), cancel); // past the metrics' 1 s refresh interval
        var third = Parse(await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", cancel));

        foreach (var scrape in new[] { first, second })
        {
            Assert.Equal(100, scrape.Samples["moegpustats_moegs_routing_efficiency_percent"]);
            Assert.Equal(0.5, scrape.Samples["moegpustats_moegs_loss_load_balance"]);
            Assert.Equal(2, scrape.Samples["moegpustats_moegs_load_max_mean_ratio"]);
        }

        Assert.Equal(100, third.Samples["moegpustats_moegs_routing_efficiency_percent"]);
        Assert.Equal(0.25, third.Samples["moegpustats_moegs_loss_load_balance"]);
        Assert.Equal(4, third.Samples["moegpustats_moegs_load_max_mean_ratio"]);
    }

    /// <summary>
    /// A series' unit reaches the scraper in its HELP, the one place Prometheus shows it: the efficiency is a percentage
    /// (0 to 100, not a fraction an alert would compare with 0.95), the latency in seconds, a counter in its items.
    /// </summary>
    [Fact]
    public async Task TheHelpOfASeriesSaysItsUnit()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting([0, 1], tokens: 2, topK: 1);
        var port = FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port);
        using var http = new HttpClient();
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(1));

        var text = await http.GetStringAsync($"http://127.0.0.1:{port}/metrics", TestContext.Current.CancellationToken);

        var help = text.Split('\n')
            .Where(line => line.StartsWith("# HELP ", StringComparison.Ordinal))
            .Select(line => line["# HELP ".Length..].Split(' ', 2))
            .ToDictionary(parts => parts[0], parts => parts[1]);
        Assert.Equal("(%) Percentage of routed slots kept.", help["moegpustats_moegs_routing_efficiency_percent"]);
        Assert.Equal("(s) Routing latency.", help["moegpustats_moegs_routing_latency_seconds"]);
        Assert.Equal("({token}) Tokens recorded.", help["moegpustats_moegs_tokens_total"]);
        Assert.Equal("Coefficient of variation of expert utilization.", help["moegpustats_moegs_utilization_cv"]);
    }

    /// <summary>Sends <paramref name="request"/> (method and path) on <paramref name="connection"/> and reads the answer's status line and headers, up to the blank line.</summary>
    private static async Task<string> HeadersAsync(NetworkStream connection, string request, CancellationToken cancel)
    {
        await connection.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"{request} HTTP/1.1\r\nHost: localhost\r\n\r\n"), cancel);
        var headers = new System.Text.StringBuilder();
        var one = new byte[1];
        while (!headers.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            Assert.Equal(1, await connection.ReadAsync(one, cancel));
            headers.Append((char)one[0]);
        }

        return headers.ToString();
    }

    /// <summary>
    /// A lock held on a thread of its own until released or disposed (or <see cref="Patience.Hold"/>, so that a broken
    /// test fails rather than hangs): statistics whose lock it is keep a scrape inside its collection.
    /// </summary>
    private sealed class HeldLock : IDisposable
    {
        private readonly ManualResetEventSlim _release = new();
        private readonly Thread _holder;

        public HeldLock(Lock gate, CancellationToken cancel)
        {
            using var held = new ManualResetEventSlim();
            _holder = new Thread(() =>
            {
                lock (gate)
                {
                    held.Set();
                    _release.Wait(Patience.Hold, cancel);
                }
            });
            _holder.Start();
            held.Wait(cancel);
        }

        public void Release() => _release.Set();

        public void Dispose()
        {
            _release.Set();
            _holder.Join();
            _release.Dispose();
        }
    }
}
