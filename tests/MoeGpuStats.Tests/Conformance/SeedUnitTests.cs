using Microsoft.Extensions.Logging.Abstractions;
using MoeGpuStats.Monitoring;

namespace MoeGpuStats.Tests.Conformance;

/// <summary>The seed's own seven unit tests, ported.</summary>
public sealed class SeedUnitTests
{
    [Fact]
    public void RoutingStatsCreation()
    {
        var stats = new RoutingStats();
        Assert.Equal(0UL, stats.TotalRoutings);
        Assert.Equal(0UL, stats.TotalTokens);
        Assert.Equal(0.0f, stats.RoutingEfficiency);
    }

    [Fact]
    public void RoutingStatsRecording()
    {
        var stats = new RoutingStats();
        var decision = new RoutingDecision
        {
            ExpertAssignments = [[new ExpertAssignment(0, 0.8f, 0, 0)]],
            ExpertCapacities = [5, 3, 2, 0],
            TotalTokens = 10,
            TokensDropped = 0,
            LoadBalanceLoss = 0.1f,
            RouterZLoss = 0.05f,
            AuxiliaryLoss = 0.15f,
        };

        stats.RecordRouting(decision);

        Assert.Equal(1UL, stats.TotalRoutings);
        Assert.Equal(10UL, stats.TotalTokens);
        Assert.Equal(0UL, stats.TokensDropped);
        Assert.Equal(100.0f, stats.RoutingEfficiency);
        Assert.Equal(4, stats.ExpertUtilization.Count);
    }

    [Fact]
    public void LatencyStats()
    {
        var latency = new LatencyStats();
        latency.RecordLatency(TimeSpan.FromMilliseconds(10));
        latency.RecordLatency(TimeSpan.FromMilliseconds(20));
        latency.RecordLatency(TimeSpan.FromMilliseconds(30));

        Assert.Equal(3UL, latency.TotalMeasurements);
        Assert.Equal(20.0, latency.AverageLatency());
        Assert.Equal(10.0, latency.MinLatencyMs);
        Assert.Equal(30.0, latency.MaxLatencyMs);
    }

    [Fact]
    public void UtilizationCv()
    {
        // The seed sets the utilization vector directly; here the same vector comes from one batch of 10 tokens.
        var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2, 3, 4], TotalTokens = 10 });
        Assert.Equal([0.1f, 0.2f, 0.3f, 0.4f], stats.ExpertUtilization);
        Assert.True(stats.UtilizationCv() > 0.0f);
    }

    [Fact]
    public void CapacityStats()
    {
        var capacity = new CapacityStats();
        capacity.Update(new RoutingDecision { ExpertCapacities = [50, 75, 25, 100], TotalTokens = 250 });
        Assert.True(capacity.AverageUtilization > 0.0f);
        Assert.True(capacity.PeakUtilization > 0.0f);
    }

    [Fact]
    public void ThroughputStats()
    {
        var throughput = new ThroughputStats(1000, 10, 100.0f, 95.0f, 50.0);
        Assert.Equal(2000.0, throughput.TokensPerSecond());
        Assert.Equal(20.0, throughput.RoutingsPerSecond());
    }

    [Fact]
    public void PerformanceMonitor()
    {
        using var monitor = new PerformanceMonitor(TimeSpan.FromSeconds(1), NullLogger.Instance);
        monitor.RecordRouting(
            new RoutingDecision { ExpertCapacities = [10, 20, 30], TotalTokens = 60, LoadBalanceLoss = 0.1f, RouterZLoss = 0.05f, AuxiliaryLoss = 0.15f },
            TimeSpan.FromMilliseconds(25));

        Assert.Equal(1UL, monitor.Stats.TotalRoutings);
        Assert.Equal(60UL, monitor.Stats.TotalTokens);
    }
}
