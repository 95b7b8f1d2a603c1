using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Testing;
using MoeGpuStats.Monitoring;

namespace MoeGpuStats.Tests.Monitoring;

/// <summary>The seed's performance report, as a logger receives it.</summary>
public sealed class PerformanceMonitorTests
{
    [Fact]
    public void TheReportLogsTheSeedsLinesWithTheirValues()
    {
        var logger = new FakeLogger();
        using var monitor = new PerformanceMonitor(TimeSpan.Zero, logger);
        var culture = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        try
        {
            monitor.RecordRouting(new RoutingDecision { ExpertCapacities = [10, 20, 30], TotalTokens = 60 }, TimeSpan.FromMilliseconds(25));
        }
        finally
        {
            CultureInfo.CurrentCulture = culture;
        }

        var lines = logger.Collector.GetSnapshot().Select(record => record.Message).ToArray();
        Assert.Equal("🔍 Expert Routing Performance Report", lines[0]);
        Assert.Matches(@"^  Uptime: \d+\.\d\ds$", lines[1]);
        Assert.Equal(
            [
                "  Total routings: 1",
                "  Total tokens: 60",
                "  Routing efficiency: 100.00%",
                "  Tokens/second: 2400.00",
                "  Average latency: 25.00ms",
                "  P95 latency: 25.00ms",
                "  Utilization CV: 0.408",
                "  Most utilized expert: 2 (50.00%)",
                "  Least utilized expert: 0 (16.67%)",
            ],
            lines[2..]);
        Assert.All(logger.Collector.GetSnapshot(), record => Assert.Equal(LogLevel.Information, record.Level));
        Assert.Equal(Enumerable.Range(100, 11), logger.Collector.GetSnapshot().Select(record => record.Id.Id));
    }

    [Fact]
    public void NoReportIsBuiltForALoggerThatIsOff()
    {
        var logger = new FakeLogger();
        logger.ControlLevel(LogLevel.Information, enabled: false);
        using var monitor = new PerformanceMonitor(TimeSpan.Zero, logger);
        monitor.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 2 }, TimeSpan.FromMilliseconds(1));
        Assert.Empty(logger.Collector.GetSnapshot());
        Assert.Equal(1UL, monitor.Stats.TotalRoutings);
    }

    [Fact]
    public void ReportsComeOnlyOnceTheIntervalHasPassed()
    {
        var logger = new FakeLogger();
        using var monitor = new PerformanceMonitor(TimeSpan.FromHours(1), logger);
        for (var i = 0; i < 5; i++)
        {
            monitor.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 2 }, TimeSpan.FromMilliseconds(1));
        }

        Assert.Empty(logger.Collector.GetSnapshot());
        monitor.PrintReport();
        Assert.Equal("  Total routings: 5", logger.Collector.GetSnapshot()[2].Message);
    }

    /// <summary>A negative latency is refused before anything is recorded, the decision included.</summary>
    [Fact]
    public void ANegativeLatencyIsRefusedAndNothingIsRecorded()
    {
        using var monitor = new PerformanceMonitor(TimeSpan.FromHours(1), NullLogger.Instance);

        var error = Assert.Throws<ArgumentOutOfRangeException>(() => monitor.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 2 }, TimeSpan.FromMilliseconds(-1)));

        Assert.Equal("latency", error.ParamName);
        Assert.Equal((0UL, 0UL), (monitor.Stats.TotalRoutings, monitor.Stats.RoutingLatencyStats.TotalMeasurements));
    }

    /// <summary>Reset clears the statistics the report is made of.</summary>
    [Fact]
    public void ResetClearsTheStatistics()
    {
        var logger = new FakeLogger();
        using var monitor = new PerformanceMonitor(TimeSpan.FromHours(1), logger);
        monitor.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 3], TotalTokens = 4 }, TimeSpan.FromMilliseconds(1));

        monitor.Reset();
        monitor.PrintReport();

        Assert.Equal((0UL, 0UL, 0UL), (monitor.Stats.TotalRoutings, monitor.Stats.TotalTokens, monitor.Stats.RoutingLatencyStats.TotalMeasurements));
        Assert.Equal("  Total routings: 0", logger.Collector.GetSnapshot()[2].Message);
    }

    /// <summary>
    /// The interval runs from the last report, or from a reset: a record just after either reports nothing, though the
    /// interval has passed since the monitor was made. (The records follow each other within the 2 s interval.)
    /// </summary>
    [Fact]
    public void TheIntervalRunsFromTheLastReportOrReset()
    {
        var interval = TimeSpan.FromSeconds(2);
        var reported = new FakeLogger();
        using var reporting = new PerformanceMonitor(interval, reported);
        var reset = new FakeLogger();
        using var resetting = new PerformanceMonitor(interval, reset);
        var decision = new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 2 };
        Thread.Sleep(interval + TimeSpan.FromMilliseconds(200));

        reporting.RecordRouting(decision, TimeSpan.FromMilliseconds(1));
        var first = reported.Collector.Count;
        reporting.RecordRouting(decision, TimeSpan.FromMilliseconds(1));
        resetting.Reset();
        resetting.RecordRouting(decision, TimeSpan.FromMilliseconds(1));

        Assert.Equal(11, first);
        Assert.Equal(first, reported.Collector.Count);
        Assert.Equal(0, reset.Collector.Count);
    }

    /// <summary>
    /// A monitor records, so a model's layer (read-only: the model records it) is refused at construction, naming the
    /// layer, not at the first record; a disposed monitor refuses a report even where the logger is off.
    /// </summary>
    [Fact]
    public void AModelsLayerIsRefusedAndADisposedMonitorReportsNothing()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
        var error = Assert.Throws<ArgumentException>(() => new PerformanceMonitor(TimeSpan.Zero, NullLogger.Instance, model.Layer(1)));
        Assert.Equal("stats", error.ParamName);
        Assert.StartsWith("stats cannot be monitored: Layer 1 of a model is read-only: record it with ModelRoutingStats.RecordStep", error.Message);

        var logger = new FakeLogger();
        logger.ControlLevel(LogLevel.Information, enabled: false);
        var monitor = new PerformanceMonitor(TimeSpan.Zero, logger);
        monitor.Dispose();
        Assert.Equal("This PerformanceMonitor was disposed.", Assert.Throws<ObjectDisposedException>(monitor.PrintReport).Message);
        Assert.Equal("This PerformanceMonitor was disposed.", Assert.Throws<ObjectDisposedException>(monitor.Reset).Message);
        Assert.Equal("This PerformanceMonitor was disposed.", Assert.Throws<ObjectDisposedException>(() => monitor.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 2 }, TimeSpan.FromMilliseconds(1))).Message);
    }
}
