using System.Text.Json;
using System.Text.Json.Nodes;
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
        var (decision, refusal) = Bad(kind);
        Assert.StartsWith(refusal, Assert.ThrowsAny<ArgumentException>(() => capacity.Update(decision)).Message);
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

    /// <summary>
    /// The slots of capacity and the slots used stop at 2^63 − 1, the most a snapshot holds, on the managed engine, in a
    /// merge, and read back: 4,096 experts of 2^31 − 1 slots reach it in just over 2^20 batches, and decisions of a
    /// million experts at 2^31 − 1 slots each in about 4,100, where a total past it could not be saved (the slots used
    /// were written past it and refused on reading) and the seed's u64 wraps.
    /// </summary>
    [Fact]
    public void TheSlotsStopAtTheMostASnapshotHolds()
    {
        const ulong most = long.MaxValue;
        var options = new RoutingStatsOptions { Experts = 8, ExpertCapacity = int.MaxValue };
        using var recorded = new RoutingStats(options);
        recorded.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        var node = JsonNode.Parse(JsonSerializer.Serialize(recorded))!;
        var nearly = most / int.MaxValue * int.MaxValue;
        node["capacity_stats"]!["total_capacity"] = nearly;
        node["capacity_stats"]!["total_used"] = most - 5;
        using var near = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
        Assert.Equal((nearly, most - 5), (near.CapacityStats.TotalCapacity, near.CapacityStats.TotalUsed));

        near.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        Assert.Equal((most, most - 1), (near.CapacityStats.TotalCapacity, near.CapacityStats.TotalUsed));
        near.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        Assert.Equal((most, most), (near.CapacityStats.TotalCapacity, near.CapacityStats.TotalUsed));

        using var readBack = JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(near))!;
        Assert.Equal((most, most), (readBack.CapacityStats.TotalCapacity, readBack.CapacityStats.TotalUsed));
        using var merged = RoutingStats.Merge([near, readBack]);
        Assert.Equal((most, most), (merged.CapacityStats.TotalCapacity, merged.CapacityStats.TotalUsed));
        Assert.Equal(2 * near.TotalRoutings, merged.TotalRoutings);
    }
}
