using System.Text.Json;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Managed;

public sealed class MergeAndFileTests
{
    [Fact]
    public void MergingRanksGivesExactCountsAndBatchWeightedAverages()
    {
        using var whole = new RoutingStats();
        using var rank0 = new RoutingStats();
        using var rank1 = new RoutingStats();
        var random = new Random(21);
        for (var i = 0; i < 600; i++)
        {
            var counts = new int[6];
            for (var e = 0; e < counts.Length; e++)
            {
                counts[e] = random.Next(0, 100) * (e + 1);
            }

            var decision = new RoutingDecision { ExpertCapacities = counts, TotalTokens = counts.Sum() / 2, TokensDropped = random.Next(0, 3), LoadBalanceLoss = (float)random.NextDouble() };
            whole.RecordRouting(decision);
            (random.Next(3) == 0 ? rank0 : rank1).RecordRouting(decision);
            var latency = TimeSpan.FromTicks(random.Next(1, 100_000));
            whole.RecordRoutingLatency(latency);
            rank0.RecordRoutingLatency(latency);
        }

        using var merged = RoutingStats.Merge([rank0, rank1]);

        Assert.Equal(whole.ExpertTokenCounts, merged.ExpertTokenCounts);
        Assert.Equal(whole.TotalTokens, merged.TotalTokens);
        Assert.Equal(whole.TokensDropped, merged.TokensDropped);
        Assert.Equal(whole.TotalRoutings, merged.TotalRoutings);
        Assert.Equal(whole.RoutingEfficiency, merged.RoutingEfficiency);
        Assert.Equal(whole.CapacityStats.TotalUsed, merged.CapacityStats.TotalUsed);
        Assert.Equal(whole.CapacityStats.CapacityExceededCount, merged.CapacityStats.CapacityExceededCount);
        for (var e = 0; e < 6; e++)
        {
            Assert.Equal(whole.ExpertUtilization[e], merged.ExpertUtilization[e], 1e-4 * whole.ExpertUtilization[e]);
        }

        Assert.Equal(whole.AverageLoadBalanceLoss, merged.AverageLoadBalanceLoss, 1e-4);
        Assert.Equal(whole.RoutingLatencyStats.TotalMeasurements, merged.RoutingLatencyStats.TotalMeasurements);
        Assert.Equal(whole.RoutingLatencyStats.MaxLatencyMs, merged.RoutingLatencyStats.MaxLatencyMs);
    }

    [Fact]
    public void DifferentExpertCountsDoNotMerge()
    {
        using var a = new RoutingStats();
        using var b = new RoutingStats();
        a.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2], TotalTokens = 3 });
        b.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2, 3], TotalTokens = 6 });
        Assert.Throws<ArgumentException>(() => RoutingStats.Merge([a, b]));
    }

    [Fact]
    public void ASavedSnapshotLoadsBackEqualAndLeavesNoTemporaryFile()
    {
        var folder = Directory.CreateTempSubdirectory("moegs-");
        try
        {
            using var stats = new RoutingStats();
            JsonTests.Feed(stats, new Random(4), 200);
            var path = Path.Combine(folder.FullName, "snapshot.json");
            RoutingStatsFile.Save(stats, path);
            RoutingStatsFile.Save(stats, path);

            using var loaded = RoutingStatsFile.Load(path);
            Assert.Equal(JsonSerializer.Serialize(stats), JsonSerializer.Serialize(loaded));
            Assert.Equal(["snapshot.json"], folder.GetFiles().Select(f => f.Name));
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    [Fact]
    public void ATruncatedSnapshotGivesAnErrorNamingTheFile()
    {
        var folder = Directory.CreateTempSubdirectory("moegs-");
        try
        {
            using var stats = new RoutingStats();
            JsonTests.Feed(stats, new Random(4), 50);
            var path = Path.Combine(folder.FullName, "cut.json");
            RoutingStatsFile.Save(stats, path);
            var text = File.ReadAllText(path);
            File.WriteAllText(path, text[..(text.Length / 2)]);

            var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(path));
            Assert.Contains(path, error.Message);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>Totals near 2^64 used to wrap in a merge (merged tokens below merged dropped, an efficiency of 6.6e18 %).</summary>
    [Fact]
    public void AMergeThatWouldPassTwoToTheSixtyFourIsRefused()
    {
        using var part = JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: ulong.MaxValue - 10, tokensDropped: 5))!;
        using var other = JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: 100, tokensDropped: 50))!;
        var error = Assert.Throws<ArgumentException>(() => RoutingStats.Merge([part, other]));
        Assert.Contains("total_tokens", error.Message);
        Assert.Contains("2^64 - 1", error.Message);

        using var near = JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: ulong.MaxValue - 100, tokensDropped: 5))!;
        using var merged = RoutingStats.Merge([near, other]);
        Assert.Equal(ulong.MaxValue, merged.TotalTokens);
        Assert.Equal(55UL, merged.TokensDropped);
    }

    [Fact]
    public void ASnapshotWithMoreDroppedThanRoutedIsMalformed()
    {
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: 4, tokensDropped: 5)));
        Assert.Contains("tokens_dropped 5 of total_tokens 4", error.Message);
    }

    private static string Snapshot(ulong totalTokens, ulong tokensDropped) =>
        $$$"""
        {"total_routings":1,"total_tokens":{{{totalTokens}}},"tokens_dropped":{{{tokensDropped}}},"expert_utilization":[0.5,0.5],
         "average_load_balance_loss":0,"average_router_z_loss":0,"routing_efficiency":50,"expert_token_counts":[1,1],
         "routing_latency_stats":{"total_measurements":0,"total_latency_ms":0,"min_latency_ms":null,"max_latency_ms":0,"recent_latencies":[]},
         "load_variance_history":[0],
         "capacity_stats":{"average_utilization":0,"peak_utilization":0,"capacity_exceeded_count":0,"total_capacity":0,"total_used":0}}
        """;
}
