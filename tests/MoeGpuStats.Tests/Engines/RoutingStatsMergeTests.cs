using System.Text.Json;
using System.Text.Json.Nodes;
using MoeGpuStats.Engines;
using MoeGpuStats.Serialization;
using static System.FormattableString;

namespace MoeGpuStats.Tests.Engines;

/// <summary>
/// <see cref="RoutingStatsMerge"/>'s exact sums: each counter a merge adds is refused by its own name, after what the
/// parts are within, where its sum passes the largest count a snapshot holds (2^63 − 1), and at that count exactly it
/// is taken; the slots of capacity and used stop there.
/// </summary>
public sealed class RoutingStatsMergeTests
{
    private const ulong MaxCount = RoutingStatsJson.MaxCount;

    public static TheoryData<string> Counters =>
    [
        "total_routings", "total_tokens", "tokens_dropped", "routed_slots", "slots_dropped", "invalid_expert_ids",
        "capacity_exceeded_count", "expert_token_counts[1]",
    ];

    /// <summary>The slots of capacity and the slots used stop at the largest count, as a record stops them, instead of being refused.</summary>
    [Theory]
    [InlineData("total_capacity")]
    [InlineData("total_used")]
    public void TheSlotsStopAtTheLargestCount(string counter)
    {
        var options = new RoutingStatsOptions { Experts = 2 };
        var merge = new RoutingStatsMerge();
        merge.Add(State(counter, MaxCount - 2), options);
        merge.Add(State(counter, 2), options);
        merge.Add(State(counter, 1), options);

        using var merged = merge.Result();

        Assert.Equal(MaxCount, counter == "total_used" ? merged.CapacityStats.TotalUsed : merged.CapacityStats.TotalCapacity);
    }

    [Theory]
    [MemberData(nameof(Counters))]
    public void EachCounterPastTheLargestCountIsRefusedByItsNameAndAtItIsTaken(string counter)
    {
        var options = new RoutingStatsOptions { Experts = 2 };
        var merge = new RoutingStatsMerge("layers[3].");
        merge.Add(State(counter, MaxCount - 2), options);
        merge.Add(State(counter, 2), options);

        var error = Assert.Throws<ArgumentException>(() => merge.Add(State(counter, 1), options));

        Assert.Equal("parts", error.ParamName);
        Assert.StartsWith(Invariant($"The merged layers[3].{counter} exceeds 9,223,372,036,854,775,807 ({MaxCount} + 1), the most a snapshot holds"), error.Message);
    }

    [Fact]
    public void TheLatenciesMeasurementsPastTheLargestCountAreRefusedByName()
    {
        using var full = WithMeasurements(MaxCount);
        using var one = WithMeasurements(1);
        var merge = new RoutingStatsMerge();
        merge.Add(full);

        var error = Assert.Throws<ArgumentException>(() => merge.Add(one));

        Assert.StartsWith(Invariant($"The merged total_measurements exceeds 9,223,372,036,854,775,807 ({MaxCount} + 1)"), error.Message);
    }

    /// <summary>A part's sums, one counter at <paramref name="value"/> and the others 0: the merge adds each counter alone.</summary>
    private static RoutingState State(string counter, ulong value)
    {
        var state = new RoutingState
        {
            ExpertUtilization = new float[2],
            UtilizationSums = new double[2],
            ExpertTokenCounts = new ulong[2],
            LoadBalanceLossSum = 0,
            RouterZLossSum = 0,
        };
        switch (counter)
        {
            case "total_routings": state.TotalRoutings = value; break;
            case "total_tokens": state.TotalTokens = value; break;
            case "tokens_dropped": state.TokensDropped = value; break;
            case "routed_slots": state.RoutedSlots = value; break;
            case "slots_dropped": state.SlotsDropped = value; break;
            case "invalid_expert_ids": state.InvalidExpertIds = value; break;
            case "capacity_exceeded_count": state.CapacityExceededCount = value; break;
            case "total_used": state.TotalUsed = value; break;
            case "total_capacity": state.TotalCapacity = value; break;
            case "expert_token_counts[1]": state.ExpertTokenCounts[1] = value; break;
            default: throw new ArgumentOutOfRangeException(nameof(counter), counter, "not a counter of the merge");
        }

        return state;
    }

    private static RoutingStats WithMeasurements(ulong measurements)
    {
        // Every latency 1 ms; a run keeps its newest 1,000: as many as it measured, up to that.
        var recent = string.Join(",", Enumerable.Repeat("1", (int)Math.Min(measurements, 1000)));
        var node = JsonNode.Parse(Snapshots.Snapshot(totalTokens: 2, tokensDropped: 0))!;
        node["routing_latency_stats"] = JsonNode.Parse(
            Invariant($$"""{"total_measurements":{{measurements}},"total_latency_ms":{{(double)measurements}},"min_latency_ms":1,"max_latency_ms":1,"recent_latencies":[{{recent}}]}"""));
        return JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
    }
}
