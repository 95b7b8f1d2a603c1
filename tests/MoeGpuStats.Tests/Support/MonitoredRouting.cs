using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Support;

/// <summary>
/// A model's and a router's metrics endpoints (as <c>moegs --metrics-port</c> serves them, every
/// optional series on) over statistics whose every series has something to show: ids outside the
/// experts, slots dropped beyond a capacity of 1, losses and latencies. <see cref="Step"/> records
/// one more step into both, so that rates over a scraper's interval are not zero.
/// </summary>
internal sealed class MonitoredRouting : IDisposable
{
    private readonly ModelRoutingStats _model = new(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, ExpertCapacity = 1 });
    private readonly RoutingStats _router = new(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 1 });
    private readonly MetricsEndpoint _modelEndpoint;
    private readonly MetricsEndpoint _routerEndpoint;
    private int _steps;

    public MonitoredRouting()
    {
        (ModelPort, RouterPort) = (PrometheusText.FreePort(), PrometheusText.FreePort());
        _modelEndpoint = MetricsEndpoint.Start(_model, "localhost", ModelPort, topExperts: 2, expertSeries: true, recentSteps: 2);
        _routerEndpoint = MetricsEndpoint.Start(_router, "localhost", RouterPort);

        // After the endpoints start: the latency histogram counts the latencies recorded after its publisher is created.
        Step();
    }

    public int ModelPort { get; }

    public int RouterPort { get; }

    /// <summary>One step of 3 tokens into the model (ids 0 to 7 of 4 experts) and one batch with a latency into the router.</summary>
    public void Step()
    {
        var seed = ++_steps;
        _model.RecordStep(ModelTrace.Ids(1, _model.Layers, tokens: 3, seed), tokens: 3, topK: 2, loadBalanceLosses: [0.25f, 0.5f], routerZLosses: [0.01f, 0.02f]);
        _router.RecordRouting([0, 0, 1, seed % 2 == 0 ? 9 : 2], tokens: 2, topK: 2, loadBalanceLoss: 0.125f, routerZLoss: 0.005f);
        _router.RecordRoutingLatency(TimeSpan.FromMicroseconds(100 + (seed % 7 * 50)));
    }

    /// <summary>The names of every series both endpoints serve now (histograms as their _bucket, _sum and _count).</summary>
    public async Task<HashSet<string>> ServedSeriesAsync(CancellationToken cancel)
    {
        using var http = new HttpClient();
        var served = new HashSet<string>();
        foreach (var port in new[] { ModelPort, RouterPort })
        {
            var (_, samples) = PrometheusText.Parse(await http.GetStringAsync($"http://localhost:{port}/metrics", cancel));
            served.UnionWith(samples.Keys.Select(sample => sample.Split('{')[0]));
        }

        return served;
    }

    public void Dispose()
    {
        _modelEndpoint.Dispose();
        _routerEndpoint.Dispose();
        _model.Dispose();
        _router.Dispose();
    }
}
