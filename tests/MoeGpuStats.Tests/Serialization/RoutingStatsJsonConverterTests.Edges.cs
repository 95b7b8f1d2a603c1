using System.Text.Json;
using System.Text.Json.Nodes;
using static MoeGpuStats.Tests.Support.Snapshots;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>
/// The reader's consistency checks at their edges: the most a run can leave reads back, and one step past it is
/// refused, naming the field that is wrong.
/// </summary>
public sealed partial class RoutingStatsJsonConverterTests
{
    private static readonly RoutingStatsOptions CapacityAndDecay = new() { Experts = 4, ExpertCapacity = 3, UtilizationDecay = 0.5f };

    /// <summary>A batch may drop every token it routes (a decision of as many dropped as tokens): its state reads back, a seed's file of it too.</summary>
    [Fact]
    public void EveryTokenDroppedReadsBack()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [2, 2], TotalTokens = 4, TokensDropped = 4 });
        Assert.Equal(stats.RoutedSlots, stats.SlotsDropped);
        AssertReadsBackTheSame(stats);

        using var seedsFile = JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: 2, tokensDropped: 2))!;
        Assert.Equal(2UL, seedsFile.TokensDropped);
        Assert.Equal(0f, seedsFile.RoutingEfficiency);
    }

    /// <summary>
    /// A decision's largest share of a capacity, the one expert's 2^31 − 1 slots over 3 a batch, rounds to a float32
    /// above the quotient: it reads back, as the bound allows float32's rounding.
    /// </summary>
    [Fact]
    public void TheLargestShareOfACapacityReadsBack()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 1, ExpertCapacity = 3 });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [int.MaxValue], TotalTokens = int.MaxValue });
        Assert.True(stats.CapacityStats.PeakUtilization > int.MaxValue / 3.0, $"{stats.CapacityStats.PeakUtilization}");
        AssertReadsBackTheSame(stats);
    }

    /// <summary>A per-expert array one entry longer than the arrays it must match is refused, each pair named.</summary>
    [Theory]
    [InlineData("expert_utilization_sums", "expert_utilization_sums has 5 entries but expert_utilization has 4.")]
    [InlineData("decayed_expert_utilization", "decayed_expert_utilization has 5 entries but expert_utilization has 4; it holds one per expert.")]
    [InlineData("expert_token_counts", "expert_utilization has 4 entries but expert_token_counts has 5.")]
    [InlineData("expert_utilization,expert_utilization_sums,decayed_expert_utilization", "expert_utilization has 5 entries but expert_token_counts has 4.")]
    public void APerExpertArrayLongerThanItsPeersIsRefused(string lengthened, string message)
    {
        using var stats = Recorded("managed", CapacityAndDecay, seed: 34);
        var node = Written(stats);
        foreach (var name in lengthened.Split(','))
        {
            node[name]!.AsArray().Add(0);
        }

        Assert.Equal(message, Refusal(node));
    }

    /// <summary>Before the first batch nothing is counted: each count, and a loss sum, is refused by name.</summary>
    [Theory]
    [InlineData("total_tokens=5;routed_slots=0", "total_routings is 0 but total_tokens is 5, routed_slots 0 and expert_token_counts sum to 0: counts without a batch.")]
    [InlineData("routed_slots=5", "total_routings is 0 but total_tokens is 0, routed_slots 5 and expert_token_counts sum to 0: counts without a batch.")]
    [InlineData("expert_utilization=[0,0,0,0];expert_token_counts=[0,3,0,0]", "total_routings is 0 but total_tokens is 0, routed_slots 0 and expert_token_counts sum to 3: counts without a batch.")]
    [InlineData("load_balance_loss_sum=5", "average_load_balance_loss is 0 but load_balance_loss_sum is 5 over total_routings 0; the average is the sum over the batches divided by them.")]
    public void ACountBeforeTheFirstBatchIsRefused(string edits, string message)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        Assert.Equal(message, Refusal(Edited(stats, edits)));
    }

    /// <summary>
    /// Figures the reader checks against others within float32's rounding: off by less than it they read, off by more
    /// they are refused. The efficiency is within 1e-4 points of its slots', an average within a millionth of its sum
    /// over the batches, and the capacity's moving average at most a millionth above its peak.
    /// </summary>
    [Theory]
    [InlineData("routing_efficiency", 5e-5, true)]
    [InlineData("routing_efficiency", 1e-3, false)]
    [InlineData("average_load_balance_loss", 5e-7, true)]
    [InlineData("average_load_balance_loss", 1e-5, false)]
    [InlineData("capacity_stats/average_utilization", 5e-7, true)]
    [InlineData("capacity_stats/average_utilization", 1e-5, false)]
    public void AFigureReadsOnlyWithinFloat32sRoundingOfWhatItIsCheckedAgainst(string path, double off, bool reads)
    {
        using var stats = Recorded("managed", CapacityAndDecay, seed: 34);
        var node = Written(stats);
        var capacity = node["capacity_stats"]!;
        var (exact, relative) = path switch
        {
            "routing_efficiency" => ((double)stats.RoutingEfficiency, false),
            "average_load_balance_loss" => ((double)node["load_balance_loss_sum"]! / stats.TotalRoutings, true),
            _ => ((double)(float)capacity["peak_utilization"]!, true),
        };
        Set(node, path, JsonSerializer.Serialize((float)(relative ? exact * (1 + off) : exact + off)));

        if (reads)
        {
            using var read = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
            Assert.Equal(stats.TotalRoutings, read.TotalRoutings);
        }
        else
        {
            var name = path.Split('/')[^1];
            Assert.Contains($"{name} is ", Refusal(node));
        }
    }

    /// <summary>Without a capacity too, every slot an expert counts was used or dropped (by the caller): fewer is refused.</summary>
    [Fact]
    public void WithoutACapacityEverySlotCountedWasUsedOrDropped()
    {
        using var stats = Recorded("managed", new RoutingStatsOptions { Experts = 4 }, seed: 34);
        Assert.True(stats.SlotsDropped > 0, "the recording drops no slot");
        var node = Written(stats);
        var counted = node["expert_token_counts"]!.AsArray().Aggregate(0UL, (sum, count) => sum + (ulong)count!);
        var used = counted - stats.SlotsDropped - 1;
        Set(node, "capacity_stats/total_used", $"{used}");

        Assert.Equal($"capacity_stats.total_used is {used} and slots_dropped {stats.SlotsDropped} but expert_token_counts sum to {counted}; every slot an expert counts was used or dropped.", Refusal(node));
    }

    /// <summary>Latency figures that no run of measurements gives together are refused, each by its own rule.</summary>
    [Theory]
    [InlineData("recent_latencies/0=null", "recent_latencies must hold finite, non-negative milliseconds.")]
    [InlineData("max_latency_ms=null", "total_latency_ms 9, max_latency_ms null: they are numbers (only min_latency_ms is null, before the first measurement).")]
    [InlineData("total_latency_ms=-1", "total_latency_ms -1, min_latency_ms 1, max_latency_ms 5: latencies cannot be negative.")]
    [InlineData("total_latency_ms=5;min_latency_ms=2", "total_latency_ms 5 over total_measurements 3 is a mean of 1.6666666666666667 ms, outside min_latency_ms 2 to max_latency_ms 5;")]
    [InlineData("total_latency_ms=15.00015", "total_latency_ms 15.00015 over total_measurements 3 is a mean of 5.00005")]
    public void LatenciesNoMeasurementsGiveAreRefused(string edits, string message)
    {
        using var stats = Recorded("managed", CapacityAndDecay, seed: 34);
        Assert.StartsWith(message, Refusal(Edited(stats, edits, under: "routing_latency_stats/")));
    }

    /// <summary>
    /// The fields written only where they carry information are written wherever they do: slots dropped beside as many
    /// slots routed as tokens, and a merge of two parts.
    /// </summary>
    [Fact]
    public void FieldsWrittenOnlyWhenTheyCarryInformationAreWrittenWheneverTheyDo()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 3 });
        stats.RecordRouting([0, 0, 0, 0, 1, 2], tokens: 6, topK: 1);
        Assert.Equal((6UL, 6UL, 1UL, 0UL), (stats.RoutedSlots, stats.TotalTokens, stats.SlotsDropped, stats.TokensDropped));
        AssertReadsBackTheSame(stats);

        using var other = new RoutingStats(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 3 });
        other.RecordRouting([3, 3], tokens: 2, topK: 1);
        using var merged = RoutingStats.Merge([stats, other]);
        using var read = JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(merged))!;
        Assert.Equal(2, read.MergedParts);
        AssertReadsBackTheSame(merged);
    }

    /// <summary><paramref name="stats"/>' snapshot with each <c>path=json</c> of <paramref name="edits"/> (';'-separated) set at <paramref name="under"/> + path.</summary>
    private static JsonObject Edited(RoutingStats stats, string edits, string under = "")
    {
        var node = Written(stats);
        foreach (var edit in edits.Split(';'))
        {
            var at = edit.IndexOf('=');
            Set(node, under + edit[..at], edit[(at + 1)..]);
        }

        return node;
    }

    /// <summary>The message the reader refuses <paramref name="node"/> with.</summary>
    private static string Refusal(JsonNode node) =>
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())).Message;
}
