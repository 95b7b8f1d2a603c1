using Prometheus;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Serves the statistics' metrics for Prometheus to scrape at <c>http://HOST:PORT/metrics</c>
/// (prometheus-net publishes every .NET <c>Meter</c>, ours included). Bound to localhost unless told otherwise.
/// </summary>
internal sealed class MetricsEndpoint : IDisposable
{
    private readonly RoutingStatsMetrics _metrics;
    private readonly MetricServer _server;

    private MetricsEndpoint(RoutingStatsMetrics metrics, MetricServer server)
    {
        _metrics = metrics;
        _server = server;
    }

    public static MetricsEndpoint Start(RoutingStats stats, string host, int port, string? layer = null)
    {
        var metrics = new RoutingStatsMetrics(stats, layer);
        var server = new MetricServer(hostname: host, port: port);
        try
        {
            server.Start();
        }
        catch
        {
            metrics.Dispose();
            server.Dispose();
            throw;
        }

        return new MetricsEndpoint(metrics, server);
    }

    public void Dispose()
    {
        _server.Dispose();
        _metrics.Dispose();
    }
}
