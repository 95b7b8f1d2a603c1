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
}
