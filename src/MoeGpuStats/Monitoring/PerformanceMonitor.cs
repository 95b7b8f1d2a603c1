using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace MoeGpuStats.Monitoring;

/// <summary>
/// Records decisions with their latency and logs the seed's performance report from the first
/// <see cref="RecordRouting"/> after each <c>reportInterval</c> (no timer: a monitor that records nothing
/// reports nothing; the seed's <c>monitoring::PerformanceMonitor</c>, through Microsoft.Extensions.Logging
/// instead of the <c>log</c> crate).
/// </summary>
public sealed partial class PerformanceMonitor : IDisposable
{
    private readonly TimeSpan _reportInterval;
    private readonly ILogger _logger;
    private long _startTimestamp;
    private long _lastReportTimestamp;
    private bool _disposed;

    /// <summary>Creates a monitor over new managed statistics.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="logger"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="reportInterval"/> is negative.</exception>
    public PerformanceMonitor(TimeSpan reportInterval, ILogger logger)
        : this(reportInterval, logger, new RoutingStats())
    {
    }

    /// <summary>Creates a monitor over <paramref name="stats"/> (any engine); the monitor owns and disposes them.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="logger"/> or <paramref name="stats"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// <paramref name="stats"/> were disposed (or, on a device, their accelerator), or are a model's layer
    /// (<see cref="ModelRoutingStats.Layer"/>), which takes no record: the model records every layer.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="reportInterval"/> is negative.</exception>
    public PerformanceMonitor(TimeSpan reportInterval, ILogger logger, RoutingStats stats)
    {
        OutOfRange.ThrowIfNegative(reportInterval);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentNullException.ThrowIfNull(stats);
        if (stats.Gone() is { } gone)
        {
            throw Disposed.ArgumentError(nameof(stats), gone);
        }

        if (stats.RecordRefusal() is { } readOnly)
        {
            throw new ArgumentException($"{nameof(stats)} cannot be monitored: {readOnly.Message}", nameof(stats), readOnly);
        }

        _reportInterval = reportInterval;
        _logger = logger;
        Stats = stats;
        _startTimestamp = _lastReportTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>The statistics being monitored.</summary>
    public RoutingStats Stats { get; }

    /// <summary>Records a decision and its latency; logs a report when the interval has passed.</summary>
    /// <exception cref="ArgumentException">The decision or latency is invalid (see <see cref="RoutingStats.RecordRouting(RoutingDecision)"/>); nothing is recorded.</exception>
    /// <exception cref="ObjectDisposedException">The monitor was disposed: "This PerformanceMonitor was disposed."</exception>
    public void RecordRouting(RoutingDecision routingDecision, TimeSpan latency)
    {
        Disposed.ThrowIf(_disposed, nameof(PerformanceMonitor));
        OutOfRange.ThrowIfNegative(latency);
        Stats.RecordRouting(routingDecision);
        Stats.RecordRoutingLatency(latency);
        if (Stopwatch.GetElapsedTime(_lastReportTimestamp) >= _reportInterval)
        {
            PrintReport();
            _lastReportTimestamp = Stopwatch.GetTimestamp();
        }
    }

    /// <summary>Logs the report at Information level, one message per line as the seed does.</summary>
    /// <exception cref="ObjectDisposedException">The monitor was disposed: "This PerformanceMonitor was disposed."</exception>
    public void PrintReport()
    {
        Disposed.ThrowIf(_disposed, nameof(PerformanceMonitor));
        if (!_logger.IsEnabled(LogLevel.Information))
        {
            return;
        }

        var snapshot = Stats.Backend == "managed" ? Stats : Stats.Snapshot();
        var throughput = snapshot.GetThroughputStats();
        var latency = snapshot.RoutingLatencyStats;
        Log.ReportHeader(_logger);
        Log.Uptime(_logger, Stopwatch.GetElapsedTime(_startTimestamp).TotalSeconds);
        Log.TotalRoutings(_logger, snapshot.TotalRoutings);
        Log.TotalTokens(_logger, snapshot.TotalTokens);
        Log.RoutingEfficiency(_logger, snapshot.RoutingEfficiency);
        Log.TokensPerSecond(_logger, throughput.TokensPerSecond());
        Log.AverageLatency(_logger, latency.AverageLatency());
        Log.P95Latency(_logger, latency.P95Latency());
        Log.UtilizationCv(_logger, snapshot.UtilizationCv());
        if (snapshot.MostUtilizedExpert() is var (most, mostUtilization))
        {
            Log.MostUtilized(_logger, most, mostUtilization * 100.0f);
        }

        if (snapshot.LeastUtilizedExpert() is var (least, leastUtilization))
        {
            Log.LeastUtilized(_logger, least, leastUtilization * 100.0f);
        }

        if (!ReferenceEquals(snapshot, Stats))
        {
            snapshot.Dispose();
        }
    }

    /// <summary>Clears the statistics and restarts the uptime and report clocks.</summary>
    /// <exception cref="ObjectDisposedException">The monitor was disposed: "This PerformanceMonitor was disposed."</exception>
    public void Reset()
    {
        Disposed.ThrowIf(_disposed, nameof(PerformanceMonitor));
        Stats.Reset();
        _startTimestamp = _lastReportTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>Disposes the statistics.</summary>
    public void Dispose()
    {
        _disposed = true;
        Stats.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(100, LogLevel.Information, "🔍 Expert Routing Performance Report", EventName = "ReportHeader")]
        public static partial void ReportHeader(ILogger logger);

        [LoggerMessage(101, LogLevel.Information, "  Uptime: {UptimeSeconds:F2}s", EventName = "ReportUptime")]
        public static partial void Uptime(ILogger logger, double uptimeSeconds);

        [LoggerMessage(102, LogLevel.Information, "  Total routings: {TotalRoutings}", EventName = "ReportTotalRoutings")]
        public static partial void TotalRoutings(ILogger logger, ulong totalRoutings);

        [LoggerMessage(103, LogLevel.Information, "  Total tokens: {TotalTokens}", EventName = "ReportTotalTokens")]
        public static partial void TotalTokens(ILogger logger, ulong totalTokens);

        [LoggerMessage(104, LogLevel.Information, "  Routing efficiency: {RoutingEfficiency:F2}%", EventName = "ReportRoutingEfficiency")]
        public static partial void RoutingEfficiency(ILogger logger, float routingEfficiency);

        [LoggerMessage(105, LogLevel.Information, "  Tokens/second: {TokensPerSecond:F2}", EventName = "ReportTokensPerSecond")]
        public static partial void TokensPerSecond(ILogger logger, double tokensPerSecond);

        [LoggerMessage(106, LogLevel.Information, "  Average latency: {AverageLatencyMs:F2}ms", EventName = "ReportAverageLatency")]
        public static partial void AverageLatency(ILogger logger, double averageLatencyMs);

        [LoggerMessage(107, LogLevel.Information, "  P95 latency: {P95LatencyMs:F2}ms", EventName = "ReportP95Latency")]
        public static partial void P95Latency(ILogger logger, double p95LatencyMs);

        [LoggerMessage(108, LogLevel.Information, "  Utilization CV: {UtilizationCv:F3}", EventName = "ReportUtilizationCv")]
        public static partial void UtilizationCv(ILogger logger, float utilizationCv);

        [LoggerMessage(109, LogLevel.Information, "  Most utilized expert: {Expert} ({UtilizationPercent:F2}%)", EventName = "ReportMostUtilized")]
        public static partial void MostUtilized(ILogger logger, int expert, float utilizationPercent);

        [LoggerMessage(110, LogLevel.Information, "  Least utilized expert: {Expert} ({UtilizationPercent:F2}%)", EventName = "ReportLeastUtilized")]
        public static partial void LeastUtilized(ILogger logger, int expert, float utilizationPercent);
    }
}
