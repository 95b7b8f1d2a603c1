using static MoeGpuStats.Tests.Support.Decisions;

namespace MoeGpuStats.Tests;

/// <summary><see cref="CapacityStats"/> fed decisions directly.</summary>
public sealed class CapacityStatsTests
{
    [Theory]
    [MemberData(nameof(BadDecisions), MemberType = typeof(Decisions))]
    public void ABadDecisionIsRejectedByCapacityStats(string kind)
    {
        var capacity = new CapacityStats();
        Assert.ThrowsAny<ArgumentException>(() => capacity.Update(Bad(kind)));
        Assert.Equal(0UL, capacity.TotalCapacity);
        Assert.Equal(0f, capacity.AverageUtilization);
    }

    /// <summary>
    /// Decisions folded in directly, not through <see cref="RoutingStats"/>: 20 of 2 × 10 slots used in a
    /// batch that dropped a token, then 4 in one that dropped none. The exponential average (alpha 0.1),
    /// the peak, the batches that dropped and the totals follow; a copy keeps each figure.
    /// </summary>
    [Fact]
    public void UpdateFoldsEachBatchIntoTheAverageThePeakAndTheTotals()
    {
        var capacity = new CapacityStats(slotsPerExpert: 10);
        capacity.Update(new RoutingDecision { ExpertCapacities = [5, 15], TotalTokens = 10, TokensDropped = 1 });
        Assert.Equal(0.1f, capacity.AverageUtilization);
        Assert.Equal(1f, capacity.PeakUtilization);
        Assert.Equal(1UL, capacity.CapacityExceededCount);

        capacity.Update(new RoutingDecision { ExpertCapacities = [2, 2], TotalTokens = 2 });
        Assert.Equal((0.1 * 0.2) + (0.9 * 0.1), capacity.AverageUtilization, 1e-6);
        Assert.Equal(1f, capacity.PeakUtilization);
        Assert.Equal(1UL, capacity.CapacityExceededCount);
        Assert.Equal(40UL, capacity.TotalCapacity);
        Assert.Equal(24UL, capacity.TotalUsed);
        Assert.Equal(60.0, capacity.OverallUtilization(), 1e-4);

        var copy = capacity.Copy();
        Assert.Equal(
            (capacity.SlotsPerExpert, capacity.AverageUtilization, capacity.PeakUtilization, capacity.CapacityExceededCount, capacity.TotalCapacity, capacity.TotalUsed),
            (copy.SlotsPerExpert, copy.AverageUtilization, copy.PeakUtilization, copy.CapacityExceededCount, copy.TotalCapacity, copy.TotalUsed));
    }
}
