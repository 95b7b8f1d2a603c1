using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static MoeGpuStats.Tests.Support.Decisions;
using static MoeGpuStats.Tests.Support.Snapshots;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>
/// <see cref="RoutingStats"/> through System.Text.Json (RoutingStatsJsonConverter): a round trip continues
/// exactly, the seed's fields are read, and a state no sequence of records leaves is refused by field.
/// </summary>
[UseCulture("sv-SE")]
public sealed partial class RoutingStatsJsonConverterTests
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
    [InlineData("experts", "\"two\"", "The field 'experts' is \"two\"; it must be a 32-bit whole number")]
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
    [InlineData("min_latency_ms", "null", "total_measurements 1, 1 recent_latencies, min_latency_ms null, max_latency_ms 2")]
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

    /// <summary>
    /// Counts past 2^63 − 1, which no run reaches by recording: 2^64 − 1 read as a count would wrap to 0 at
    /// the next record. Every count goes through one reader, so each field is refused alike.
    /// </summary>
    [Theory]
    [InlineData("total_routings", "total_routings")]
    [InlineData("total_tokens", "total_tokens")]
    [InlineData("routed_slots", "routed_slots")]
    [InlineData("invalid_expert_ids", "invalid_expert_ids")]
    [InlineData("expert_token_counts/1", "expert_token_counts[1]")]
    [InlineData("capacity_stats/total_used", "total_used")]
    [InlineData("routing_latency_stats/total_measurements", "total_measurements")]
    public void ACountAboveTwoToTheSixtyThreeIsRefused(string path, string shownAs)
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        Set(node, path, "18446744073709551615");
        var error = Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Equal($"The field '{shownAs}' is 18446744073709551615; a count is at most 9,223,372,036,854,775,807.", error.Message);
    }

    /// <summary>Less capacity than the batches add, or slots not whole experts', is no state a run leaves.</summary>
    [Theory]
    [InlineData("capacity_stats/total_capacity", "0", "capacity_stats.total_capacity is 0 for total_routings 1 at 100 slots per expert (the default: slots_per_expert is absent); each batch adds 100 times its experts (1 or more), so it is a multiple of 100, at least 100.")]
    [InlineData("capacity_stats/total_capacity", "250", "capacity_stats.total_capacity is 250 for total_routings 1 at 100 slots per expert (the default")]
    public void CountsNoRunLeavesAreRefused(string path, string value, string message)
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        Set(node, path, value);
        var error = Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.StartsWith(message, error.Message);
    }

    /// <summary>
    /// Counts that imply others the file lacks, which were read: an invalid id without a token (a token of
    /// only -1 ids is padding, one with an invalid id is a token), a drop in no batch that exceeded the
    /// capacity or such a batch without a drop, and fewer slots used than the experts counted.
    /// </summary>
    [Theory]
    [InlineData("tokens_dropped", "1", "capacity_exceeded_count is 0 for tokens_dropped 1; it counts the batches that dropped, each at least one.")]
    [InlineData("capacity_stats/capacity_exceeded_count", "1", "capacity_exceeded_count is 1 for tokens_dropped 0; it counts the batches that dropped, each at least one.")]
    [InlineData("capacity_stats/total_used", "3", "capacity_stats.total_used is 3 and slots_dropped 0 but expert_token_counts sum to 4; every slot an expert counts was used or dropped.")]
    public void CountsThatImplyOthersTheFileLacksAreRefused(string path, string value, string message)
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        Set(node, path, value);
        if (path == "tokens_dropped")
        {
            node["routing_efficiency"] = 75;   // 3 of the 4 tokens kept, so that only the count disagrees
        }

        var error = Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Equal(message, error.Message);
    }

    /// <summary>
    /// Invalid ids with no token, before any batch or after batches of padding alone, which were read: an
    /// invalid id is in some token's slots, and a token of only -1 ids is padding, not a token.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void InvalidIdsWithoutATokenAreRefused(bool paddingBatch)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        if (paddingBatch)
        {
            stats.RecordRouting([-1, -1], tokens: 1, topK: 2);
        }

        var node = Written(stats);
        node["invalid_expert_ids"] = 3;
        var error = Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Equal("invalid_expert_ids is 3 but total_tokens is 0; an invalid id is some token's (a token of -1 ids alone is padding).", error.Message);
    }

    /// <summary>
    /// An object with one layer's <c>total_routings</c> and a model's <c>layers</c> is refused by both readers: each
    /// took it for its own (one layer's statistics, or a model's), so one file held two states.
    /// </summary>
    [Fact]
    public void ALayerAndAModelInOneObjectAreRefusedByBothReaders()
    {
        const string Both = "A snapshot has one layer's total_routings or a model's layers, not both: one file would read as two states.";
        var layer = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 2 });
        var modelNode = JsonNode.Parse(JsonSerializer.Serialize(model))!.AsObject();
        layer["layers"] = modelNode["layers"]!.DeepClone();
        modelNode["total_routings"] = 1;

        Assert.Equal(Both, Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(layer.ToJsonString())).Message);
        Assert.Equal(Both, Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(modelNode.ToJsonString())).Message);
    }

    /// <summary>
    /// A per-expert array longer than any state (more than <see cref="RoutingStatsOptions.MaxExperts"/> experts) is
    /// refused by its length, naming it, whatever its values: no statistics of that many experts can be made.
    /// </summary>
    [Theory]
    [InlineData("expert_token_counts")]
    [InlineData("expert_utilization")]
    public void MorePerExpertEntriesThanAnyStateAreRefused(string field)
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        node[field] = JsonNode.Parse($"[{string.Join(',', Enumerable.Repeat('0', RoutingStatsOptions.MaxExperts + 1))}]");
        var error = Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Equal($"{field} holds 1,048,577 entries, one per expert; statistics have at most 1,048,576 experts.", error.Message);
    }

    /// <summary>The seed's <c>CapacityStats.update</c> is public: a seed's state with capacity counted without a batch reads back.</summary>
    [Fact]
    public void ASeedStateWithCapacityCountedWithoutABatchReadsBack()
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        Set(node, "capacity_stats/total_capacity", "400");
        Set(node, "capacity_stats/total_used", "8");
        using var read = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
        Assert.Equal((1UL, 400UL, 8UL), (read.TotalRoutings, read.CapacityStats.TotalCapacity, read.CapacityStats.TotalUsed));
    }

    [Fact]
    public void ASlotRoutedWithoutATokenIsRefused()
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        node["routed_slots"] = 4;
        node["total_tokens"] = 0;
        var error = Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Equal("routed_slots is 4 but total_tokens is 0; a routed slot is some token's.", error.Message);
    }

    /// <summary>
    /// A state at the largest count is read, and a record that would go past it is refused, the state unchanged: past
    /// it the state could not be saved (and past 2^64 it would wrap).
    /// </summary>
    [Fact]
    public void AStateAtTheLargestCountIsReadAndARecordPastItIsRefused()
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        node["total_routings"] = long.MaxValue;
        node["expert_token_counts"]![0] = long.MaxValue;
        node["expert_token_counts"]![1] = 0;
        node["expert_utilization"]![0] = 1;
        node["expert_utilization"]![1] = 0;
        // Every slot counted was used, and each batch added at least one slot per expert to the capacity.
        node["capacity_stats"]!["total_used"] = long.MaxValue;
        node["capacity_stats"]!["slots_per_expert"] = 1;
        node["capacity_stats"]!["total_capacity"] = long.MaxValue;
        // The newest 1,000 batches' variances, as every run keeps them.
        node["load_variance_history"] = new JsonArray([.. Enumerable.Range(0, 1000).Select(_ => (JsonNode?)0.25)]);
        using var stats = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
        Assert.Equal((ulong)long.MaxValue, stats.ExpertTokenCounts[0]);
        var before = JsonSerializer.Serialize(stats);

        var error = Assert.Throws<InvalidOperationException>(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = [2, 0], TotalTokens = 2 }));
        Assert.StartsWith("This batch would take expert_token_counts[0] past 9,223,372,036,854,775,807", error.Message);
        error = Assert.Throws<InvalidOperationException>(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = [0, 2], TotalTokens = 2 }));
        Assert.StartsWith("This batch would take total_routings past 9,223,372,036,854,775,807", error.Message);
        Assert.Equal(before, JsonSerializer.Serialize(stats));
    }

    /// <summary>The engines the library records on, whose every written state must read back.</summary>
    public static TheoryData<string> Engines => ["managed", "cpu"];

    /// <summary>
    /// Statistics written, or merged, while another thread records latencies read back: the latencies
    /// are copied at one moment (read field by field, a recent latency lay above the largest).
    /// </summary>
    [Fact]
    public async Task StatisticsWrittenWhileLatenciesAreRecordedReadBack()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1], tokens: 1, topK: 2);
        using var stop = new CancellationTokenSource();
        var recorder = Task.Run(
            () =>
            {
                for (long ticks = 1; !stop.IsCancellationRequested; ticks++)
                {
                    stats.RecordRoutingLatency(TimeSpan.FromTicks(ticks));
                }
            },
            TestContext.Current.CancellationToken);

        try
        {
            // The writes start once the recorder runs, and it recorded while they ran.
            SpinWait.SpinUntil(() => stats.RoutingLatencyStats.TotalMeasurements > 0);
            var before = stats.RoutingLatencyStats.TotalMeasurements;
            for (var i = 0; i < 200; i++)
            {
                JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(stats))!.Dispose();
                using var merged = RoutingStats.Merge([stats]);
                JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(merged))!.Dispose();
            }

            Assert.True(stats.RoutingLatencyStats.TotalMeasurements > before);
        }
        finally
        {
            await stop.CancelAsync();
            await recorder;
        }
    }

    /// <summary>
    /// A file without the f64 sums (the seed's) continues from mean × batches, as README says: a batch after it weighs one
    /// in three, not one in two or (taking the mean for the sum) two in three.
    /// </summary>
    [Fact]
    public void ASeedFileWithoutSumsContinuesFromTheMeanTimesTheBatches()
    {
        var node = JsonNode.Parse(Snapshot(totalTokens: 4, tokensDropped: 0, totalRoutings: 2))!;
        node["expert_utilization"] = new JsonArray(0.5, 0.25);
        node["average_load_balance_loss"] = 1.5;
        node["average_router_z_loss"] = 0.5;
        Assert.Null(node["expert_utilization_sums"]);
        using var stats = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;

        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 2, LoadBalanceLoss = 3f, RouterZLoss = 1f });

        Assert.Equal([0.5f, (float)(1.0 / 3)], stats.ExpertUtilization);
        Assert.Equal((2f, (float)(2.0 / 3)), (stats.AverageLoadBalanceLoss, stats.AverageRouterZLoss));
    }

    /// <summary>
    /// Statistics written, snapshotted or merged while another thread records batches read back: the per-expert arrays
    /// are copied with the totals at one moment, so a batch recorded during the write cannot put counts or sums in the
    /// file that its totals do not hold (the reader refuses such a file).
    /// </summary>
    [Fact]
    public async Task StatisticsWrittenWhileBatchesAreRecordedReadBack()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 64, UtilizationDecay = 0.5f });
        var ids = Enumerable.Range(0, 256).Select(i => i % 64).ToArray();
        stats.RecordRouting(ids, tokens: 128, topK: 2);
        using var stop = new CancellationTokenSource();
        var recorder = Task.Run(
            () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    stats.RecordRouting(ids, tokens: 128, topK: 2);
                }
            },
            TestContext.Current.CancellationToken);

        try
        {
            SpinWait.SpinUntil(() => stats.TotalRoutings > 1);
            var before = stats.TotalRoutings;
            for (var i = 0; i < 200; i++)
            {
                JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(stats))!.Dispose();
                using var snapshot = stats.Snapshot();
                JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(snapshot))!.Dispose();
                using var merged = RoutingStats.Merge([stats]);
                JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(merged))!.Dispose();
            }

            Assert.True(stats.TotalRoutings > before);
        }
        finally
        {
            await stop.CancelAsync();
            await recorder;
        }
    }

    /// <summary>
    /// Every state the library writes reads back and writes again the same, so that no check refuses the
    /// library's own files: padding, invalid ids, a capacity, decay, losses, latencies, decisions, a batch
    /// of padding alone, a reset, a snapshot and a merge.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void EveryStateTheLibraryWritesReadsBackTheSame(string engine)
    {
        var options = new RoutingStatsOptions { Experts = 4, ExpertCapacity = 3, UtilizationDecay = 0.5f };
        using var fresh = Create(engine, options);
        AssertReadsBackTheSame(fresh);

        using var recorded = Recorded(engine, options, seed: 31);
        AssertReadsBackTheSame(recorded);
        using (var snapshot = recorded.Snapshot())
        {
            AssertReadsBackTheSame(snapshot);
        }

        using var other = Recorded(engine, options, seed: 32);
        using (var merged = RoutingStats.Merge([recorded, other]))
        {
            AssertReadsBackTheSame(merged);
        }

        recorded.Reset();
        AssertReadsBackTheSame(recorded);
        recorded.RecordRouting([-1, -1, -1, -1], tokens: 2, topK: 2);   // padding alone: batches, nothing routed
        AssertReadsBackTheSame(recorded);

        using var decisions = Create(engine, new RoutingStatsOptions());
        Feed(decisions, new Random(33), 300);
        decisions.RecordRouting(new RoutingDecision { ExpertCapacities = [0, 0, 0, 0, 0, 0, 0, 0], TotalTokens = 0 });
        AssertReadsBackTheSame(decisions);

        // A decision is not cut by the capacity: it may use more than it, and its file reads back.
        using var overCapacity = Create(engine, new RoutingStatsOptions { Experts = 2, ExpertCapacity = 1 });
        overCapacity.RecordRouting(new RoutingDecision { ExpertCapacities = [5, 5], TotalTokens = 10 });
        Assert.Equal(5f, overCapacity.CapacityStats.PeakUtilization);
        AssertReadsBackTheSame(overCapacity);

        // The options fix the experts of a record of ids; a decision of another count still records.
        using var otherCount = Create(engine, new RoutingStatsOptions { Experts = 4 });
        otherCount.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2, 3, 4, 5, 6, 7, 8], TotalTokens = 20 });
        AssertReadsBackTheSame(otherCount);
    }

    /// <summary>
    /// Fields that disagree with the rest of a state the library wrote, or have a length it never writes,
    /// are refused with one line naming the field; each was read before, a short decayed utilization as zeros.
    /// </summary>
    [Theory]
    [InlineData("decayed_expert_utilization", "[0.5, 0.5]", "decayed_expert_utilization has 2 entries but expert_utilization has 4; it holds one per expert.")]
    [InlineData("decayed_expert_utilization", null, "utilization_decay is 0.5 but decayed_expert_utilization is missing")]
    [InlineData("utilization_decay", null, "decayed_expert_utilization is given without utilization_decay")]
    [InlineData("expert_utilization/1", "null", "expert_utilization[1] is null; utilization cannot be negative or null.")]
    [InlineData("decayed_expert_utilization/0", "-0.25", "decayed_expert_utilization[0] is -0.25; utilization cannot be negative or null.")]
    [InlineData("expert_utilization_sums/2", "-1", "expert_utilization_sums[2] is -1; a sum of shares cannot be negative or null.")]
    [InlineData("expert_utilization_sums/2", "null", "expert_utilization_sums[2] is null")]
    [InlineData("load_variance_history/0", "-1", "load_variance_history[0] is -1; a load variance cannot be negative or null.")]
    [InlineData("load_variance_history/0", "null", "load_variance_history[0] is null")]
    [InlineData("expert_utilization/1", "3e9", "expert_utilization[1] is 3E+09; utilization is a mean of shares, an expert's count over its batch's tokens, at most 2,147,483,647")]
    [InlineData("decayed_expert_utilization/0", "1e10", "decayed_expert_utilization[0] is 10000000000; utilization is a mean of shares")]
    [InlineData("load_variance_history/0", "1e19", "load_variance_history[0] is 1E+19; a batch's load variance, over counts of at most 2^31 − 1, is at most (2^31 − 1)², about 4.61e18.")]
    [InlineData("routing_efficiency", "3.25", "routing_efficiency is 3.25 but routed_slots ")]
    [InlineData("capacity_stats/capacity_exceeded_count", "1000", "capacity_exceeded_count is 1000 for total_routings 40; a batch exceeds the capacity at most once.")]
    [InlineData("capacity_stats/capacity_exceeded_count", "41", "capacity_exceeded_count is 41 for total_routings 40; a batch exceeds the capacity at most once.")]
    [InlineData("tokens_dropped", "1000", "More dropped than routed: tokens_dropped 1000 of total_tokens ")]
    [InlineData("capacity_stats/capacity_exceeded_count", "0", "capacity_exceeded_count is 0 for slots_dropped ")]
    [InlineData("capacity_stats/total_capacity", "0", "capacity_stats.total_capacity is 0 for total_routings 40 at 3 slots per expert; each batch adds 3 times its experts (1 or more), so it is a multiple of 3, at least 120.")]
    [InlineData("capacity_stats/total_capacity", "117", "capacity_stats.total_capacity is 117 for total_routings 40 at 3 slots per expert; each batch adds 3 times its experts (1 or more), so it is a multiple of 3, at least 120.")]
    [InlineData("capacity_stats/total_capacity", "481", "capacity_stats.total_capacity is 481 for total_routings 40 at 3 slots per expert;")]
    [InlineData("capacity_stats/total_used", "0", "capacity_stats.total_used is 0 and slots_dropped ")]
    [InlineData("capacity_stats/peak_utilization", "3e38", "capacity_stats.peak_utilization is 3E+38 and average_utilization ")]
    [InlineData("capacity_stats/average_utilization", "1e9", "and average_utilization 1E+09 with slots_per_expert 3; a batch's share of its capacity is at most (2^31 − 1) / 3 = 7.15828E+08 (an expert's slots over its capacity), and so are both.")]
    [InlineData("capacity_stats/peak_utilization", "0", " above peak_utilization 0; a moving average of the batches' uses is at most the largest.")]
    [InlineData("expert_token_counts/1", "0", "but expert_token_counts[1] is 0; an expert that counted no slot had a share of 0 in every batch.")]
    [InlineData("load_balance_loss_sum", "1e6", "average_load_balance_loss is ")]
    [InlineData("router_z_loss_sum", "null", "but router_z_loss_sum is null over total_routings 40")]
    [InlineData("average_router_z_loss", "null", "average_router_z_loss is null but router_z_loss_sum is ")]
    [InlineData("routing_latency_stats/recent_latencies/0", "1e9", "recent_latencies[0] is 1000000000 but min_latency_ms is 1 and max_latency_ms 5")]
    [InlineData("routing_latency_stats/total_latency_ms", "null", "total_latency_ms null, max_latency_ms 5")]
    [InlineData("routing_latency_stats/total_latency_ms", "0.5", "total_latency_ms 0.5 is below max_latency_ms 5")]
    [InlineData("routing_latency_stats/total_latency_ms", "1e6", "ms, outside min_latency_ms 1 to max_latency_ms 5; the mean of measurements lies between the smallest and the largest.")]
    [InlineData("routing_latency_stats/recent_latencies", "[5]", "total_measurements 3, 1 recent_latencies, min_latency_ms 1, max_latency_ms 5: every run keeps the newest 3 of its measurements")]
    [InlineData("load_variance_history", "[]", "load_variance_history has 0 entries for total_routings 40; each batch adds one, the newest 1,000 kept, so it holds 40.")]
    public void AFieldThatDisagreesWithTheStateIsRefusedNamingIt(string path, string? value, string message)
    {
        using var stats = Recorded("managed", new RoutingStatsOptions { Experts = 4, ExpertCapacity = 3, UtilizationDecay = 0.5f }, seed: 34);
        var node = Written(stats);
        Set(node, path, value);
        var error = Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Contains(message, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    /// <summary>An expert that counted nothing with a decayed utilization other than 0 is refused naming that field, not the mean's.</summary>
    [Fact]
    public void ADecayedShareOfAnExpertThatCountedNothingIsRefusedByName()
    {
        using var stats = Recorded("managed", new RoutingStatsOptions { Experts = 4, UtilizationDecay = 0.5f }, seed: 34);
        var node = Written(stats);
        Set(node, "expert_token_counts/1", "0");
        Set(node, "expert_utilization/1", "0");
        Set(node, "expert_utilization_sums/1", "0");
        Set(node, "decayed_expert_utilization/1", "0.125");
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Equal("decayed_expert_utilization[1] is 0.125 but expert_token_counts[1] is 0; an expert that counted no slot had a share of 0 in every batch.", error.Message);
    }

    /// <summary>
    /// A loss sum whose mean lies past float32's largest value, within the tolerance of an average at it, is refused:
    /// two such files merged into an infinite average, written as null, and the merge's file was refused on reading.
    /// A sum whose mean is float32's largest value reads, and its merge stays finite.
    /// </summary>
    [Theory]
    [InlineData("3.4028252e38", false)]
    [InlineData("3.4028235e38", true)]
    public void ALossSumWhoseMeanIsPastFloat32IsRefused(string sum, bool reads)
    {
        var json = "{\"total_routings\":1,\"total_tokens\":1,\"tokens_dropped\":0,\"expert_utilization\":[1],\"average_load_balance_loss\":3.4028235e38,"
            + "\"average_router_z_loss\":0,\"routing_efficiency\":100,\"expert_token_counts\":[1],\"routing_latency_stats\":{\"total_measurements\":0,"
            + "\"total_latency_ms\":0,\"min_latency_ms\":null,\"max_latency_ms\":0,\"recent_latencies\":[]},\"load_variance_history\":[0],"
            + "\"capacity_stats\":{\"average_utilization\":0.01,\"peak_utilization\":0.01,\"capacity_exceeded_count\":0,\"total_capacity\":100,\"total_used\":1},"
            + "\"expert_utilization_sums\":[1],\"load_balance_loss_sum\":" + sum + ",\"router_z_loss_sum\":0,\"experts\":1}";
        if (!reads)
        {
            var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(json));
            Assert.Equal("load_balance_loss_sum is 3.4028252E+38 over total_routings 1, a mean beyond float32's range (3.40282347E+38); every value averaged is a float32.", error.Message);
            return;
        }

        using var first = JsonSerializer.Deserialize<RoutingStats>(json)!;
        using var second = JsonSerializer.Deserialize<RoutingStats>(json)!;
        using var merged = RoutingStats.Merge([first, second]);
        Assert.Equal(float.MaxValue, merged.AverageLoadBalanceLoss);
        using var readBack = JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(merged))!;
        Assert.Equal(float.MaxValue, readBack.AverageLoadBalanceLoss);
    }

    /// <summary>
    /// A mean share the sums contradict, which was read: the next record divides the sums out again, so
    /// a sum of 1e300 turned the expert's utilization into infinity (written as null) and a sum of 0
    /// dropped it from 0.5 to 0.03. Before the first batch, a mean without its sum is 0.
    /// </summary>
    [Theory]
    [InlineData("expert_utilization_sums/1", "1e300", "expert_utilization[1] is ")]
    [InlineData("expert_utilization_sums/1", "0", "but expert_utilization_sums[1] is 0 over total_routings 40")]
    [InlineData("expert_utilization/2", "0.875", "expert_utilization[2] is 0.875 but expert_utilization_sums[2] is ")]
    public void AMeanShareItsSumContradictsIsRefused(string path, string value, string message)
    {
        using var stats = Recorded("managed", new RoutingStatsOptions { Experts = 4 }, seed: 35);
        var node = Written(stats);
        Set(node, path, value);
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Contains(message, error.Message);
        Assert.EndsWith("; the average is the sum over the batches divided by them.", error.Message);
    }

    /// <summary>An average before the first batch in a file without sums (the seed's shape), which the next record replaced.</summary>
    [Theory]
    [InlineData("expert_utilization", "[0.5]", "expert_utilization[0] is 0.5 with total_routings 0; an average is 0 before the first batch.")]
    [InlineData("average_load_balance_loss", "0.25", "average_load_balance_loss is 0.25 with total_routings 0; an average is 0 before the first batch.")]
    [InlineData("average_router_z_loss", "null", "average_router_z_loss is null with total_routings 0; an average is 0 before the first batch.")]
    public void AnAverageWithoutABatchIsRefused(string field, string value, string message)
    {
        var node = Written(new RoutingStats());
        node[field] = JsonNode.Parse(value);
        node["expert_token_counts"] = new JsonArray(Enumerable.Repeat<JsonNode?>(0, node["expert_utilization"]!.AsArray().Count).ToArray());
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Equal(message, error.Message);
    }

    /// <summary>A capacity figure no record leaves: a null average was read, and every later record kept it null.</summary>
    [Theory]
    [InlineData("average_utilization", "null", "capacity_stats.average_utilization is null; a utilization cannot be negative or null.")]
    [InlineData("peak_utilization", "-0.5", "capacity_stats.peak_utilization is -0.5; a utilization cannot be negative or null.")]
    public void ANullOrNegativeCapacityUtilizationIsRefused(string field, string value, string message)
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        node["capacity_stats"]![field] = JsonNode.Parse(value);
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Equal(message, error.Message);
    }

    /// <summary>
    /// A field given twice, of which the reader took the last without a word (the seed's serde refuses
    /// such a file, so the two read different states); in the nested objects too, a name with a line break stays on one line,
    /// and a long name is cut short, never between the halves of a surrogate pair (JSON cannot encode one alone).
    /// </summary>
    [Theory]
    [InlineData("\"total_routings\":1,", "\"total_routings\":1,\"total_routings\":1000,", "The field 'total_routings' is given twice; a snapshot gives each field once.")]
    [InlineData("\"total_used\":4", "\"total_used\":4,\"total_used\":4", "The field 'capacity_stats.total_used' is given twice; a snapshot gives each field once.")]
    [InlineData("\"total_measurements\":1,", "\"total_measurements\":1,\"total_measurements\":1,", "The field 'routing_latency_stats.total_measurements' is given twice; a snapshot gives each field once.")]
    [InlineData("\"total_routings\":1,", "\"total_routings\":1,\"a\\nb\":0,\"a\\nb\":1,", "The field 'a\\nb' is given twice; a snapshot gives each field once.")]
    [InlineData("\"total_routings\":1,", "\"total_routings\":1,\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":0,\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\":1,", "The field 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is given twice; a snapshot gives each field once.")]
    [InlineData("\"total_routings\":1,", "\"total_routings\":1,\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\ud83d\ude00y\":0,\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\ud83d\ude00y\":1,", "The field 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is given twice; a snapshot gives each field once.")]
    public void AFieldGivenTwiceIsRefused(string find, string replace, string message)
    {
        Assert.Contains(find, ValidTwoExperts);
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(ValidTwoExperts.Replace(find, replace)));
        Assert.Equal(message, error.Message);
    }

    /// <summary>Names are compared as written, case and all: a name that differs from a known one by its case only is another field, unknown and skipped.</summary>
    [Fact]
    public void ANameThatDiffersInCaseOnlyIsAnotherField()
    {
        using var read = JsonSerializer.Deserialize<RoutingStats>(ValidTwoExperts.Replace("\"total_routings\":1,", "\"total_routings\":1,\"Total_Routings\":1000,\"TOTAL_ROUTINGS\":7,"))!;

        Assert.Equal(1UL, read.TotalRoutings);
    }

    /// <summary>
    /// A field name that is not text, which the parser leaves unchecked until it is read: invalid UTF-8 in a name, or
    /// half of a surrogate pair escaped, was "The JSON value could not be converted to MoeGpuStats.RoutingStats".
    /// </summary>
    [Theory]
    [InlineData("\"total_routings\":1,", "\"total_routings\":1,\"\\ud800\":0,", "A field name is not text")]
    [InlineData("\"total_used\":4", "\"total_used\":4,\"\\udc00x\":0", "A field name in 'capacity_stats' is not text")]
    [InlineData("\"total_routings\":1,", "\"total_routings\":1,\"\u00e9\":0,", "A field name is not text")]
    public void AFieldNameThatIsNotTextIsRefusedAsSuch(string find, string replace, string message)
    {
        Assert.Contains(find, ValidTwoExperts);
        var json = Encoding.UTF8.GetBytes(ValidTwoExperts.Replace(find, replace));
        if (replace.Contains('\u00e9'))
        {
            // Latin-1's é where UTF-8 wants two bytes.
            var at = Array.IndexOf(json, (byte)0xC3);
            json = [.. json[..at], 0xE9, .. json[(at + 2)..]];
        }

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(json));
        Assert.Equal($"{message} (invalid UTF-8, or half of a surrogate pair escaped); a snapshot is UTF-8 JSON.", error.Message);
    }

    /// <summary>A setting out of range, whose message named the options' property without the field or its value ("Invalid settings in routing statistics: The decay must lie in [0, 1).").</summary>
    [Theory]
    [InlineData("utilization_decay", "1.5", "The field 'utilization_decay' is 1.5; give a decay in [0, 1), or null for none.")]
    [InlineData("experts", "0", "The field 'experts' is 0; give 1 to 1,048,576.")]
    [InlineData("capacity_stats/slots_per_expert", "-2", "The field 'capacity_stats.slots_per_expert' is -2; give at least 1 slot per expert, or null for no capacity.")]
    public void ASettingOutOfRangeIsNamedAsTheFileNamesIt(string path, string value, string message)
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        Set(node, path, value);
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        Assert.Equal(message, error.Message);
    }

    /// <summary>A null decay is none, as a model's file reads it (it was read as NaN and refused as one).</summary>
    [Fact]
    public void ANullDecayIsNone()
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        Set(node, "utilization_decay", "null");
        using var read = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
        Assert.Null(read.Options.UtilizationDecay);
    }

    /// <summary>No measurement, yet a latency: the seed's LatencyStats starts at 0, null and 0.</summary>
    [Theory]
    [InlineData("total_latency_ms", "2", "total_measurements is 0 but total_latency_ms is 2")]
    [InlineData("max_latency_ms", "2", "total_measurements is 0 but total_latency_ms is 0, min_latency_ms null, max_latency_ms 2")]
    [InlineData("min_latency_ms", "0", "total_measurements is 0 but total_latency_ms is 0, min_latency_ms 0")]
    public void ALatencyWithoutAMeasurementIsRefused(string field, string value, string message)
    {
        var node = JsonNode.Parse(ValidTwoExperts)!.AsObject();
        var latency = node["routing_latency_stats"]!.AsObject();
        latency["total_measurements"] = 0;
        latency["recent_latencies"] = new JsonArray();
        latency["total_latency_ms"] = 0;
        latency["min_latency_ms"] = null;
        latency["max_latency_ms"] = 0;
        latency[field] = JsonNode.Parse(value);
        Assert.Contains(message, Assert.ThrowsAny<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())).Message);
    }

    private static RoutingStats Create(string engine, RoutingStatsOptions options) =>
        engine == "managed" ? new RoutingStats(options) : RoutingStats.OnDevice(TestAccelerators.Require(engine), options);

    /// <summary>
    /// 40 batches of top-k ids with padding, invalid ids and losses over a capacity of 3, a decision
    /// among them, and latencies of 1, 5 and 3 ms.
    /// </summary>
    private static RoutingStats Recorded(string engine, RoutingStatsOptions options, int seed)
    {
        var stats = Create(engine, options);
        var steps = ModelSteps.Random(1, 4, 2, 39, seed);
        foreach (var step in steps)
        {
            stats.RecordRouting(step.LayerIds(0), step.Valid, step.TopK, step.LoadBalanceLosses[0], step.RouterZLosses.FirstOrDefault());
        }

        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [3, 1, 0, 2], TotalTokens = 6, TokensDropped = 1, LoadBalanceLoss = 0.25f, RouterZLoss = 0.5f });
        foreach (var ms in new[] { 1, 5, 3 })
        {
            stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(ms));
        }

        return stats;
    }

    private static void AssertReadsBackTheSame(RoutingStats stats)
    {
        var json = JsonSerializer.Serialize(stats);
        using var read = JsonSerializer.Deserialize<RoutingStats>(json)!;
        Assert.Equal(json, JsonSerializer.Serialize(read));
    }

    /// <summary><paramref name="stats"/>' snapshot as the JSON tree a test edits.</summary>
    private static JsonObject Written(RoutingStats stats) => JsonNode.Parse(JsonSerializer.Serialize(stats))!.AsObject();

    /// <summary>Sets the field at <paramref name="path"/> (names and array indices, '/'-separated) to <paramref name="json"/>, or removes it where that is null.</summary>
    private static void Set(JsonObject root, string path, string? json)
    {
        var parts = path.Split('/');
        JsonNode parent = root;
        foreach (var part in parts[..^1])
        {
            parent = int.TryParse(part, out var i) ? parent[i]! : parent[part]!;
        }

        var value = json is null ? null : JsonNode.Parse(json);
        if (int.TryParse(parts[^1], out var index))
        {
            parent[index] = value;
        }
        else if (json is null)
        {
            parent.AsObject().Remove(parts[^1]);
        }
        else
        {
            parent[parts[^1]] = value;
        }
    }

    [Fact]
    public void ASnapshotWithMoreDroppedThanRoutedIsMalformed()
    {
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: 4, tokensDropped: 5)));
        Assert.Contains("tokens_dropped 5 of total_tokens 4", error.Message);
    }

    /// <summary>
    /// Sums of exactly 2^-25 (an expert's share of one slot among 2^25 tokens, a loss of 2^-25) are read back to the bit:
    /// .NET 10 writes that double one digit short (dotnet/runtime#131131), as a string that parses to the double below,
    /// so a state read back continued one unit in the last place off, and a merge of it differed from the original's.
    /// </summary>
    [Fact]
    public void ASumOfTwoToTheMinus25IsReadBackToTheBit()
    {
        var power = Math.ScaleB(1.0, -25);
        using var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1], TotalTokens = 1 << 25, LoadBalanceLoss = (float)power });
        var json = JsonSerializer.Serialize(stats);
        using var read = JsonSerializer.Deserialize<RoutingStats>(json)!;

        Assert.Contains("\"load_balance_loss_sum\":2.9802322387695312E-08", json);
        using var merged = RoutingStats.Merge([stats, stats.Snapshot()]);
        using var mergedRead = RoutingStats.Merge([read, read.Snapshot()]);
        Assert.Equal(JsonSerializer.Serialize(merged), JsonSerializer.Serialize(mergedRead));
        Assert.Equal(2 * power, JsonNode.Parse(JsonSerializer.Serialize(mergedRead))!["expert_utilization_sums"]![0]!.GetValue<double>());
    }

    /// <summary>
    /// An indented snapshot (<c>--save</c>, <c>RoutingStatsFile.Save</c>) puts the 17-digit 2^-25 on its own line, as every
    /// other value of an array: written raw, it followed its neighbour's comma on one line.
    /// </summary>
    [Fact]
    public void AnIndentedSumOfTwoToTheMinus25StandsOnItsOwnLine()
    {
        using var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [2, 1], TotalTokens = 1 << 25 });
        var indented = JsonSerializer.Serialize(stats, new JsonSerializerOptions { WriteIndented = true });

        var lines = indented.Split('\n').Select(line => line.Trim()).ToArray();
        Assert.Contains("2.9802322387695312E-08", lines);
        using var read = JsonSerializer.Deserialize<RoutingStats>(indented)!;
        Assert.Equal(JsonSerializer.Serialize(stats), JsonSerializer.Serialize(read));
    }

    /// <summary>
    /// A batch records at most 2^31 − 1 tokens, and as many ids (tokens × k), each a routed slot or an invalid id: more
    /// over the file's batches was edited, and would print a throughput no run had (2^63 − 1 tokens over 40 batches read
    /// as 4.4e23 tokens a second). The most the batches hold reads, as a merge of full batches writes it.
    /// </summary>
    [Theory]
    [InlineData("total_tokens", 5UL)]
    [InlineData("routed_slots", 0UL)]
    [InlineData("invalid_expert_ids", 5UL)]
    public void MoreTokensOrIdsThanTheBatchesHoldAreRefused(string field, ulong routedSlots)
    {
        const ulong Most = 2UL * int.MaxValue;
        var node = JsonNode.Parse(Snapshot(totalTokens: Most, tokensDropped: 0, totalRoutings: 2))!;
        if (field != "routed_slots")
        {
            node["routed_slots"] = routedSlots;
        }

        var full = field == "invalid_expert_ids" ? Most - routedSlots : Most;
        node[field] = full;
        using (var read = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!)
        {
            Assert.Equal(Most, read.TotalTokens);
        }

        node[field] = full + 1;
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        var ids = (field == "routed_slots" ? Most + 1 : routedSlots) + (field == "invalid_expert_ids" ? full + 1 : 0);
        Assert.Equal(
            field == "total_tokens"
                ? "total_tokens is 4,294,967,295 for total_routings 2; a batch records at most 2,147,483,647 tokens, so at most 4,294,967,294."
                : FormattableString.Invariant($"routed_slots {(field == "routed_slots" ? Most + 1 : routedSlots):N0} and invalid_expert_ids {(field == "invalid_expert_ids" ? full + 1 : 0):N0} are {ids:N0} ids for total_routings 2; a batch records at most 2,147,483,647 ids (tokens × k), so at most 4,294,967,294."),
            error.Message);
    }

    /// <summary>An edited file's −0, which no record writes, reads as 0, so no report prints "-0.00 %".</summary>
    [Fact]
    public void ANegativeZeroReadsAsZero()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 0, 1, 1], tokens: 2, topK: 2);
        var node = Written(stats);
        node["expert_utilization"]![2] = JsonNode.Parse("-0");
        node["expert_utilization_sums"]![2] = JsonNode.Parse("-0.0");
        using var read = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
        Assert.False(float.IsNegative(read.ExpertUtilization[2]));
        var written = JsonNode.Parse(JsonSerializer.Serialize(read))!;
        Assert.Equal("0", written["expert_utilization"]![2]!.ToJsonString());
        Assert.Equal("0", written["expert_utilization_sums"]![2]!.ToJsonString());
    }
}
