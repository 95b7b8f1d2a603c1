using System.Text.Json;

namespace MoeGpuStats.Tests.Managed;

/// <summary>Bad input: a clear exception naming the argument, and the statistics left as they were.</summary>
public sealed class BadInputTests
{
    public static TheoryData<string> BadDecisions => ["no experts", "negative count", "negative tokens", "dropped > tokens", "negative dropped", "NaN loss", "infinite z-loss"];

    private static RoutingDecision Bad(string kind) => kind switch
    {
        "no experts" => new RoutingDecision { ExpertCapacities = [], TotalTokens = 4 },
        "negative count" => new RoutingDecision { ExpertCapacities = [3, -1], TotalTokens = 4 },
        "negative tokens" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = -4 },
        "dropped > tokens" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, TokensDropped = 5 },
        "negative dropped" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, TokensDropped = -1 },
        "NaN loss" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, LoadBalanceLoss = float.NaN },
        "infinite z-loss" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, RouterZLoss = float.PositiveInfinity },
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    [Theory]
    [MemberData(nameof(BadDecisions))]
    public void ABadDecisionIsRejectedAndChangesNothing(string kind)
    {
        using var stats = Seeded();
        var before = JsonSerializer.Serialize(stats);

        var error = Assert.ThrowsAny<ArgumentException>(() => stats.RecordRouting(Bad(kind)));

        Assert.Equal("routingDecision", error.ParamName);
        Assert.Equal(before, JsonSerializer.Serialize(stats));
    }

    [Theory]
    [MemberData(nameof(BadDecisions))]
    public void ABadDecisionIsRejectedByCapacityStats(string kind)
    {
        var capacity = new CapacityStats();
        Assert.ThrowsAny<ArgumentException>(() => capacity.Update(Bad(kind)));
        Assert.Equal(0UL, capacity.TotalCapacity);
        Assert.Equal(0f, capacity.AverageUtilization);
    }

    [Fact]
    public void ANullDecisionNamesTheArgument() =>
        Assert.Equal("routingDecision", Assert.Throws<ArgumentNullException>(() => new RoutingStats().RecordRouting(null!)).ParamName);

    [Fact]
    public void ANegativeLatencyIsRejected()
    {
        using var stats = Seeded();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => stats.RecordRoutingLatency(TimeSpan.FromTicks(-1)));
        Assert.Equal("latency", error.ParamName);
        Assert.Equal(1UL, stats.RoutingLatencyStats.TotalMeasurements);
    }

    [Theory]
    [InlineData(-0.001)]
    [InlineData(100.001)]
    [InlineData(double.NaN)]
    public void APercentileOutsideTheRangeIsRejected(double p)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Seeded().RoutingLatencyStats.Percentile(p));
        Assert.Equal("p", error.ParamName);
    }

    [Fact]
    public void ANegativeWindowIsRejected() =>
        Assert.Equal("window", Assert.Throws<ArgumentOutOfRangeException>(() => Seeded().RecentLoadVarianceTrend(-1)).ParamName);

    [Fact]
    public void IdsShorterThanTokensTimesKAreRejected()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        var error = Assert.Throws<ArgumentException>(() => stats.RecordRouting([0, 1, 2], tokens: 2, topK: 2));
        Assert.Equal("topKExpertIds", error.ParamName);
        Assert.Contains("2 * 2 = 4", error.Message);
        Assert.Equal(0UL, stats.TotalRoutings);
    }

    [Fact]
    public void TopKBelowOneIsRejected()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        Assert.Equal("topK", Assert.Throws<ArgumentOutOfRangeException>(() => stats.RecordRouting([0, 1], tokens: 2, topK: 0)).ParamName);
    }

    [Fact]
    public void IdsWithoutAnExpertCountAreRejected()
    {
        using var stats = new RoutingStats();
        Assert.Throws<InvalidOperationException>(() => stats.RecordRouting([0, 1], tokens: 2, topK: 1));
    }

    [Fact]
    public void ADisposedInstanceRefusesWork()
    {
        var stats = Seeded();
        stats.Dispose();
        Assert.Throws<ObjectDisposedException>(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1], TotalTokens = 1 }));
        Assert.Throws<ObjectDisposedException>(() => stats.TotalRoutings);
    }

    [Theory]
    [InlineData(0, null, null)]
    [InlineData(null, 0, null)]
    [InlineData(null, null, 1.0f)]
    [InlineData(null, null, -0.1f)]
    public void OptionsOutOfRangeAreRejected(int? experts, int? capacity, float? decay) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new RoutingStats(new RoutingStatsOptions { Experts = experts, ExpertCapacity = capacity, UtilizationDecay = decay }));

    private static RoutingStats Seeded()
    {
        var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [5, 3, 2, 0], TotalTokens = 10, TokensDropped = 1, LoadBalanceLoss = 0.1f });
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(3));
        return stats;
    }
}
