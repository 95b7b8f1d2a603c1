namespace MoeGpuStats.Tests.Managed;

public sealed class RoutingStatsTests
{
    [Fact]
    public void TiesFollowRustsMaxByAndMinBy()
    {
        using var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 3, 3, 1], TotalTokens = 8 });
        Assert.Equal(2, stats.MostUtilizedExpert()!.Value.Index);
        Assert.Equal(0, stats.LeastUtilizedExpert()!.Value.Index);
    }

    [Fact]
    public void TheHistoryKeepsTheNewestThousandVariancesOldestFirst()
    {
        using var stats = new RoutingStats();
        for (var i = 0; i < 1234; i++)
        {
            stats.RecordRouting(new RoutingDecision { ExpertCapacities = [i, 0], TotalTokens = i });
        }

        Assert.Equal(1000, stats.LoadVarianceHistory.Count);
        Assert.Equal(234f * 234f / 4f, stats.LoadVarianceHistory[0]);
        Assert.Equal(1233f * 1233f / 4f, stats.LoadVarianceHistory[^1]);
    }

    [Fact]
    public void ChangingTheExpertCountRestartsPerExpertState()
    {
        using var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [4, 4], TotalTokens = 8 });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2, 3], TotalTokens = 6 });
        Assert.Equal([1UL, 2UL, 3UL], stats.ExpertTokenCounts);
        Assert.Equal(2UL, stats.TotalRoutings);
    }

    [Fact]
    public void IdsAreCountedWithInvalidOnesSetAside()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 3 });
        stats.RecordRouting([0, 2, 2, -2, 3, 1], tokens: 3, topK: 2);
        Assert.Equal([1UL, 1UL, 2UL], stats.ExpertTokenCounts);
        Assert.Equal(2UL, stats.InvalidExpertIds);
        Assert.Equal(3UL, stats.TotalTokens);
    }

    [Fact]
    public void AGivenCapacityDerivesDropsAndCapacityStats()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2, ExpertCapacity = 2 });
        stats.RecordRouting([0, 0, 0, 0, 1, 1], tokens: 6, topK: 1);
        Assert.Equal(2UL, stats.SlotsDropped);
        Assert.Equal(6UL, stats.RoutedSlots);
        Assert.Equal(0UL, stats.TokensDropped);
        Assert.Equal(4f / 6 * 100, stats.RoutingEfficiency);
        Assert.Equal(4UL, stats.CapacityStats.TotalCapacity);
        Assert.Equal(4UL, stats.CapacityStats.TotalUsed);
        Assert.Equal(1UL, stats.CapacityStats.CapacityExceededCount);
        Assert.Equal(1.0f, stats.CapacityStats.PeakUtilization);
    }

    [Fact]
    public void DecayedUtilizationFollowsItsFormula()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { UtilizationDecay = 0.5f });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [4, 0], TotalTokens = 4 });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [0, 4], TotalTokens = 4 });
        Assert.Equal([0.25f, 0.5f], stats.DecayedExpertUtilization);
        Assert.Equal([0.5f, 0.5f], stats.ExpertUtilization);
    }

    [Fact]
    public void TheDerivingConstructorCountsTokensWithoutAnExpert()
    {
        IReadOnlyList<ExpertAssignment>[] assignments = [[new(0, 0.9f, 0, 0)], [], [new(1, 0.6f, 2, 0)]];
        var decision = new RoutingDecision(assignments, [1, 1], 4, 0.1f, 0.01f, 0.11f);
        Assert.Equal(2, decision.TokensDropped);
    }

    [Fact]
    public void ResetClearsEverythingButTheOptions()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { ExpertCapacity = 7 });
        JsonTests.Feed(stats, new Random(3), 50);
        stats.Reset();
        Assert.Equal(0UL, stats.TotalRoutings);
        Assert.Empty(stats.ExpertUtilization);
        Assert.Empty(stats.LoadVarianceHistory);
        Assert.Equal(0UL, stats.RoutingLatencyStats.TotalMeasurements);
        Assert.Equal(7, stats.CapacityStats.SlotsPerExpert);
    }

    [Fact]
    public void RecordingAllocatesNothingOnceTheWindowsAreFull()
    {
        using var stats = new RoutingStats();
        var decisions = Enumerable.Range(0, 8)
            .Select(i => new RoutingDecision { ExpertCapacities = [.. Enumerable.Range(0, 256).Select(e => (e * 7 + i) % 300)], TotalTokens = 9000, TokensDropped = i })
            .ToArray();
        for (var i = 0; i < 2500; i++)
        {
            stats.RecordRouting(decisions[i % decisions.Length]);
            stats.RecordRoutingLatency(TimeSpan.FromTicks(1000 + i * 37 % 5000));
        }

        // The steady state allocates nothing; a round may still see the runtime's tiered
        // recompilation land (its call counting starts 100 ms after startup), so up to five rounds.
        long allocated = -1;
        for (var round = 0; round < 5 && allocated != 0; round++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 5000; i++)
            {
                stats.RecordRouting(decisions[i % decisions.Length]);
                stats.RecordRoutingLatency(TimeSpan.FromTicks(1000 + i * 37 % 5000));
            }

            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Assert.Equal(0, allocated);
    }
}
