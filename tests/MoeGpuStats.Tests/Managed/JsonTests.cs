using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoeGpuStats.Tests.Managed;

public sealed class JsonTests
{
    [Fact]
    public void ADeserializedObjectContinuesExactlyWhereTheWrittenOneStopped()
    {
        using var original = new RoutingStats();
        var random = new Random(11);
        Feed(original, random, 1500);
        using var restored = JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(original))!;

        var tail = new Random(12);
        Feed(original, tail, 300);
        tail = new Random(12);
        Feed(restored, tail, 300);

        Assert.Equal(JsonSerializer.Serialize(original), JsonSerializer.Serialize(restored));
        Assert.Equal(original.RecentLoadVarianceTrend(100), restored.RecentLoadVarianceTrend(100));
        Assert.Equal(original.RoutingLatencyStats.P99Latency(), restored.RoutingLatencyStats.P99Latency());
    }

    [Fact]
    public void ANullMinimumLatencyMeansNoMeasurementYet()
    {
        var json = JsonSerializer.Serialize(new RoutingStats());
        var node = JsonNode.Parse(json)!;
        Assert.Null(node["routing_latency_stats"]!["min_latency_ms"]);
        var restored = JsonSerializer.Deserialize<RoutingStats>(json)!;
        Assert.Equal(double.PositiveInfinity, restored.RoutingLatencyStats.MinLatencyMs);
    }

    [Fact]
    public void OptionsTravelInExtraFieldsThatTheSeedIgnores()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 3, UtilizationDecay = 0.5f });
        stats.RecordRouting([0, 0, 0, 0, 1, 9], tokens: 6, topK: 1);
        using var restored = JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(stats))!;
        Assert.Equal(stats.Options, restored.Options);
        Assert.Equal(1UL, restored.InvalidExpertIds);
        Assert.Equal(1UL, restored.SlotsDropped);
        Assert.Equal(0UL, restored.TokensDropped);
        Assert.Equal(5UL, restored.RoutedSlots);
        Assert.Equal(stats.DecayedExpertUtilization, restored.DecayedExpertUtilization);
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("{\"total_routings\":1}")]
    [InlineData("{\"total_routings\":0,\"total_tokens\":0,\"tokens_dropped\":0,\"expert_utilization\":[0.5],\"average_load_balance_loss\":0,\"average_router_z_loss\":0,\"routing_efficiency\":0,\"expert_token_counts\":[],\"routing_latency_stats\":{\"total_measurements\":0,\"total_latency_ms\":0,\"min_latency_ms\":null,\"max_latency_ms\":0,\"recent_latencies\":[]},\"load_variance_history\":[],\"capacity_stats\":{\"average_utilization\":0,\"peak_utilization\":0,\"capacity_exceeded_count\":0,\"total_capacity\":0,\"total_used\":0}}")]
    public void MalformedJsonGivesAJsonException(string json) =>
        Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(json));

    internal static void Feed(RoutingStats stats, Random random, int steps)
    {
        for (var i = 0; i < steps; i++)
        {
            if (random.Next(3) == 0)
            {
                stats.RecordRoutingLatency(TimeSpan.FromTicks(random.Next(0, 1_000_000)));
                continue;
            }

            var counts = new int[8];
            var tokens = random.Next(0, 200);
            for (var t = 0; t < tokens * 2; t++)
            {
                counts[Math.Min(7, (int)(random.NextDouble() * random.NextDouble() * 8))]++;
            }

            stats.RecordRouting(new RoutingDecision
            {
                ExpertCapacities = counts,
                TotalTokens = tokens,
                TokensDropped = random.Next(0, tokens + 1) / 4,
                LoadBalanceLoss = (float)random.NextDouble(),
                RouterZLoss = (float)random.NextDouble() / 10,
            });
        }
    }
}
