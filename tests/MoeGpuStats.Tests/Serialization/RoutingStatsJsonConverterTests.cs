using System.Text.Json;
using System.Text.Json.Nodes;
using static MoeGpuStats.Tests.Support.Decisions;
using static MoeGpuStats.Tests.Support.Snapshots;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>
/// <see cref="RoutingStats"/> through System.Text.Json (RoutingStatsJsonConverter): a round trip continues
/// exactly, the seed's fields are read, and a state no sequence of records leaves is refused by field.
/// </summary>
public sealed class RoutingStatsJsonConverterTests
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

    /// <summary>
    /// A state no sequence of records leaves behind is refused, and the message names the field as the
    /// file has it (a report of it printed a utilization of -300 % or tokens without a batch).
    /// </summary>
    [Theory]
    [InlineData("total_tokens", "-5", "The field 'total_tokens' is -5; a count is a whole number")]
    [InlineData("total_routings", "1.5", "The field 'total_routings' is 1.5")]
    [InlineData("total_tokens", "18446744073709551616", "The field 'total_tokens' is 18446744073709551616")]
    [InlineData("expert_token_counts", "[1, -1]", "The field 'expert_token_counts[1]' is -1")]
    [InlineData("expert_utilization", "[-3.0, 0.5]", "expert_utilization[0] is -3; utilization cannot be negative")]
    [InlineData("experts", "4", "experts is 4 but expert_utilization has 2 entries")]
    [InlineData("experts", "\"two\"", "The field 'experts' is \"two\"; it must be a whole number")]
    public void AnImpossibleStateIsRefusedNamingTheField(string field, string value, string message)
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        node[field] = JsonNode.Parse(value);
        var error = Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void CountsWithoutABatchAreRefused()
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        node["total_routings"] = 0;
        Assert.Contains("total_routings is 0 but total_tokens is 4", Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())).Message);
    }

    /// <summary>Latencies and load variances no run records: more than measured or batched, or a smallest latency above the largest.</summary>
    [Theory]
    [InlineData("recent_latencies", "[2, 2]", "total_measurements 1, 2 recent_latencies")]
    [InlineData("min_latency_ms", "9", "min_latency_ms 9, max_latency_ms 2")]
    [InlineData("load_variance_history", "[1, 1]", "load_variance_history has 2 entries for total_routings 1")]
    public void LatenciesAndVariancesNoRunRecordsAreRefused(string field, string value, string message)
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        var parent = field == "load_variance_history" ? node : node["routing_latency_stats"]!.AsObject();
        parent[field] = JsonNode.Parse(value);
        Assert.Contains(message, Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())).Message);
    }

    [Fact]
    public void ANegativeLatencyIsRefused()
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        node["routing_latency_stats"]!["min_latency_ms"] = -5;
        Assert.Contains("latencies cannot be negative", Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())).Message);
    }

    [Fact]
    public void TheValidStateTheseTestsEditIsRead()
    {
        using var stats = JsonSerializer.Deserialize<RoutingStats>(ValidTwoExperts)!;
        Assert.Equal([3UL, 1UL], stats.ExpertTokenCounts);
    }

    private const string ValidTwoExperts = """
        {"total_routings":1,"total_tokens":4,"tokens_dropped":0,"expert_utilization":[0.75,0.25],
         "average_load_balance_loss":0,"average_router_z_loss":0,"routing_efficiency":100,"expert_token_counts":[3,1],
         "routing_latency_stats":{"total_measurements":1,"total_latency_ms":2,"min_latency_ms":2,"max_latency_ms":2,"recent_latencies":[2]},
         "load_variance_history":[1],
         "capacity_stats":{"average_utilization":0,"peak_utilization":0,"capacity_exceeded_count":0,"total_capacity":200,"total_used":4}}
        """;

    [Fact]
    public void ASnapshotWithMoreDroppedThanRoutedIsMalformed()
    {
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: 4, tokensDropped: 5)));
        Assert.Contains("tokens_dropped 5 of total_tokens 4", error.Message);
    }
}
