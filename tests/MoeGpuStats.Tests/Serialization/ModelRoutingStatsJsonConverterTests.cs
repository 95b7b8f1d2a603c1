using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>A <see cref="ModelRoutingStats"/> through System.Text.Json (ModelRoutingStatsJsonConverter): every layer, the window and the summary, and files no records can produce refused by field.</summary>
public sealed class ModelRoutingStatsJsonConverterTests
{
    private static readonly ModelRoutingStatsOptions Options = new() { Layers = 3, Experts = 8, Window = 3, UtilizationDecay = 0.5f };

    [Fact]
    public void JsonKeepsEveryLayerTheWindowAndTheSummary()
    {
        using var model = new ModelRoutingStats(Options);
        foreach (var step in ModelSteps.Random(Options.Layers, Options.Experts, 2, 7, seed: 21))
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
        }

        var json = JsonSerializer.Serialize(model);
        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(json)!;
        Assert.Equal(ModelSteps.Fingerprint(model), ModelSteps.Fingerprint(read));
        Assert.Equal(JsonSerializer.Serialize(model.Summary()), JsonSerializer.Serialize(read.Summary()));
        Assert.Equal(json, JsonSerializer.Serialize(read));
        var node = JsonDocument.Parse(json).RootElement;
        Assert.Equal(3, node.GetProperty("layers").GetArrayLength());
        Assert.Equal(7, node.GetProperty("layers")[0].GetProperty("total_routings").GetInt32());
        var error = Assert.Throws<InvalidOperationException>(() => read.RecordStep(new int[6], 1, 2));
        Assert.Contains("read from JSON", error.Message);
    }

    [Theory]
    [InlineData("\"window_load\":[[", "\"window_load\":[[-1,", "window_load[0]")]
    [InlineData("\"window_steps\":3", "\"window_steps\":4", "window_steps")]
    [InlineData("\"window_steps\":3", "\"window_steps\":0", "window_steps is 0 with steps = 7")]
    [InlineData("\"window_steps\":3", "\"window_steps\":-1", "window_steps is -1; it must be 1 to min(window = 3, steps = 7)")]
    [InlineData("\"window_load\":[[", "\"window_load\":[[0,", "window_load[0] must be an array of 8 counts (one per expert).")]
    [InlineData("\"steps\":7", "\"steps\":8", "layers[0]")]
    [InlineData("\"experts\":8", "\"experts\":9", "window_load[0]")]
    [InlineData("\"steps\":7", "\"steps\":\"7\"", "The field 'steps' is \"7\"; a count is a whole number")]
    [InlineData("\"experts\":8", "\"experts\":\"8\"", "The field 'experts' is \"8\"; it must be a 32-bit whole number")]
    [InlineData("\"utilization_decay\":0.5", "\"utilization_decay\":\"x\"", "'utilization_decay' must be a finite number")]
    [InlineData("\"window_steps\":3", "\"window_steps\":\"3\"", "The field 'window_steps' is \"3\"; it must be a 32-bit whole number")]
    [InlineData("\"routing_latency_stats\":{", "\"routing_latency_stats\":\"x\",\"unused\":{", "'routing_latency_stats' must be an object")]
    [InlineData("\"expert_utilization\":[", "\"expert_utilization\":[1e300,", "beyond a float's range")]
    [InlineData("\"utilization_decay\":0.5", "\"utilization_decay\":1e39", "The field 'utilization_decay' must be a finite number.")]
    [InlineData("\"steps\":7", "\"skip_empty_steps\":1,\"steps\":7", "The field 'skip_empty_steps' must be true or false.")]
    [InlineData("\"steps\":7", "\"skip_empty_steps\":\"true\",\"steps\":7", "The field 'skip_empty_steps' must be true or false.")]
    public void AJsonFileThatNoRecordsCanProduceIsRefusedByField(string find, string replace, string field)
    {
        using var model = new ModelRoutingStats(Options);
        foreach (var step in ModelSteps.Random(Options.Layers, Options.Experts, 2, 7, seed: 22))
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
        }

        var json = JsonSerializer.Serialize(model);
        Assert.Contains(find, json);
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(json.Replace(find, replace)));
        Assert.Contains(field, error.Message);
    }

    /// <summary>
    /// A window of fewer steps than the model's newest min(window, steps), which was read: only a merge's is
    /// shorter, its longest part's, and that is at least the steps an even split among merged_parts gives each.
    /// A window of more steps than the run holds is refused too, though the model's window would hold them.
    /// </summary>
    [Theory]
    [InlineData(3, false, 2, "window_steps is 2 with steps = 7 and window = 3; the window holds the newest min(window, steps) = 3 steps.")]
    [InlineData(10, false, 6, "window_steps is 6 with steps = 7 and window = 10; the window holds the newest min(window, steps) = 7 steps.")]
    [InlineData(10, true, 6, "window_steps is 6 with steps = 14 from merged_parts = 2 and window = 10; a merge's window holds its longest part's, at least min(window, steps / merged_parts rounded up) = 7 steps.")]
    [InlineData(10, false, 8, "window_steps is 8; it must be 1 to min(window = 10, steps = 7), or 0 while steps = 0.")]
    public void AWindowOfStepsNoRecordingLeavesIsRefused(int window, bool merged, int windowSteps, string message)
    {
        using var model = Recorded(Options with { Window = window });
        using var other = Recorded(Options with { Window = window }, seed: 27);
        using var written = merged ? ModelRoutingStats.Merge([model, other]) : model.Snapshot();
        var node = JsonNode.Parse(JsonSerializer.Serialize(written))!;
        node["window_steps"] = windowSteps;
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal(message, error.Message);
    }

    /// <summary>A merge of 7 and 8 steps has a window of at least 8, half its 15 steps rounded up, not down.</summary>
    [Fact]
    public void AMergesShortestWindowIsHalfItsStepsRoundedUp()
    {
        var options = Options with { Window = 10 };
        using var model = Recorded(options);
        using var longer = Recorded(options, seed: 27);
        var step = ModelSteps.Random(options.Layers, options.Experts, 2, 1, seed: 5)[0];
        longer.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
        using var merged = ModelRoutingStats.Merge([model, longer]);
        var node = JsonNode.Parse(JsonSerializer.Serialize(merged))!;
        Assert.Equal(8, (int)node["window_steps"]!);
        node["window_steps"] = 7;

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));

        Assert.Equal("window_steps is 7 with steps = 15 from merged_parts = 2 and window = 10; a merge's window holds its longest part's, at least min(window, steps / merged_parts rounded up) = 8 steps.", error.Message);
    }

    /// <summary>A merge's window is its longest part's, shorter than min(window, steps) of the summed steps: it reads back.</summary>
    [Fact]
    public void AMergesWindowOfItsLongestPartReadsBack()
    {
        using var model = Recorded(Options with { Window = 10 });
        using var other = Recorded(Options with { Window = 10 }, seed: 27);
        using var merged = ModelRoutingStats.Merge([model, other]);
        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(JsonSerializer.Serialize(merged))!;
        Assert.Equal((14UL, 7), (read.Summary().Steps, read.Summary().WindowSteps));
    }

    /// <summary>A model's own field given twice, which the reader took the last of without a word; a layer's goes through the one-layer reader.</summary>
    [Theory]
    [InlineData("\"steps\":7", "\"steps\":7,\"steps\":7", "The field 'steps' is given twice; a snapshot gives each field once.")]
    [InlineData("\"window_load\":", "\"window_load\":[],\"window_load\":", "The field 'window_load' is given twice; a snapshot gives each field once.")]
    [InlineData("\"tokens_dropped\":0,", "\"tokens_dropped\":0,\"tokens_dropped\":0,", "The field 'tokens_dropped' is given twice; a snapshot gives each field once.")]
    public void AModelFieldGivenTwiceIsRefused(string find, string replace, string message)
    {
        using var model = Recorded(Options);
        var json = JsonSerializer.Serialize(model);
        Assert.Contains(find, json);
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(json.Replace(find, replace)));
        Assert.EndsWith(message, error.Message);
    }

    /// <summary>
    /// A file of 3 KB claiming 1,024 layers of 4,096 experts and holding none of their counts: the
    /// reader allocated the 32 MiB window load before it found the rows missing.
    /// </summary>
    [Fact]
    public void AModelFileIsRefusedBeforeAllocatingCountsItDoesNotHold()
    {
        var emptyLayers = new JsonArray([.. Enumerable.Range(0, ModelRoutingStatsOptions.MaxLayers).Select(_ => (JsonNode?)new JsonObject())]);
        var json = new JsonObject { ["experts"] = 4096, ["window"] = 1, ["steps"] = 0, ["window_steps"] = 0, ["window_load"] = new JsonArray(), ["layers"] = emptyLayers }.ToJsonString();
        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(json));   // warm: the serializer's own caches

        var before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(json));
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal("window_load has 0 rows; it needs one per layer (1,024).", error.Message);
        Assert.True(allocated < 1 << 20, $"{allocated:N0} bytes allocated to refuse a file of {json.Length:N0} bytes");
    }

    /// <summary>A layer's own malformed field, whose message did not say which of the layers it was in.</summary>
    [Theory]
    [InlineData(0, "total_tokens", "-1", "layers[0]: The field 'total_tokens' is -1; a count is a whole number from 0 to 9,223,372,036,854,775,807.")]
    [InlineData(2, "capacity_stats", "\"x\"", "layers[2]: The field 'capacity_stats' must be an object.")]
    [InlineData(1, null, "\"x\"", "layers[1]: Routing statistics must be a JSON object, not a string.")]
    public void AMalformedLayerIsNamedByItsIndex(int layer, string? field, string value, string message)
    {
        using var model = Recorded(Options);
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        if (field is null)
        {
            node["layers"]![layer] = JsonNode.Parse(value);
        }
        else
        {
            node["layers"]![layer]![field] = JsonNode.Parse(value);
        }

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal(message, error.Message);
    }

    /// <summary>A model's setting out of range, whose message named the options' property ("Window must be at least 1 step.") without the field or its value.</summary>
    [Theory]
    [InlineData("window", "0", "The field 'window' is 0; give at least 1 step.")]
    [InlineData("expert_capacity", "0", "The field 'expert_capacity' is 0; give at least 1 slot per expert, or null for no capacity.")]
    [InlineData("experts", "5000", "The field 'experts' is 5000; give 1 to 4,096.")]
    [InlineData("layers", "[]", "The field 'layers' has 0 entries; give 1 to 1,024.")]
    [InlineData("window", "100000000", "The field 'window' is 100000000; window × layers × experts is 2,400,000,000, at most 2,147,483,591 (the window ring's counts): give 89,478,482 steps or fewer.")]
    public void AModelSettingOutOfRangeIsNamedAsTheFileNamesIt(string field, string value, string message)
    {
        using var model = Recorded(Options);
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        node[field] = JsonNode.Parse(value);
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal(message, error.Message);
    }

    /// <summary>A file whose experts and window are both out of range: the experts are refused first, as the options refuse them.</summary>
    [Fact]
    public void ExpertsOutOfRangeAreNamedBeforeAWindowRingTooLong()
    {
        using var model = Recorded(Options);
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        node["experts"] = 5000;
        node["window"] = 100000000;
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal("The field 'experts' is 5000; give 1 to 4,096.", error.Message);
    }

    /// <summary>A layer's counts that do not add up to its routed slots: no step of ids leaves that behind.</summary>
    [Fact]
    public void ALayerWhoseCountsDoNotSumToItsRoutedSlotsIsRefused()
    {
        using var model = new ModelRoutingStats(Options with { Window = 10 });
        foreach (var step in ModelSteps.Random(Options.Layers, Options.Experts, 2, 7, seed: 24))
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
        }

        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        var routed = node["layers"]![2]!["routed_slots"]!.GetValue<ulong>();
        node["layers"]![2]!["routed_slots"] = routed + 1;

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal($"layers[2]'s expert_token_counts sum to {routed} slots but its routed_slots is {routed + 1}; in a model every routed slot is one expert's.", error.Message);
    }

    /// <summary>
    /// Counts past 2^63 − 1 in the model's own fields, read through the same reader as a layer's, and
    /// refused in its words (not another check's, and 2^64 − 1 steps not read).
    /// </summary>
    [Theory]
    [InlineData("steps", "The field 'steps' is 18446744073709551615; a count is at most 9,223,372,036,854,775,807.")]
    [InlineData("window_load", "The field 'window_load[0][0]' is 18446744073709551615; a count is at most 9,223,372,036,854,775,807.")]
    public void AModelCountAboveTwoToTheSixtyThreeIsRefused(string field, string message)
    {
        using var model = Recorded(Options);
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        if (field == "steps")
        {
            node["steps"] = ulong.MaxValue;
        }
        else
        {
            node["window_load"]![0]![0] = ulong.MaxValue;
        }

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal(message, error.Message);
    }

    /// <summary>
    /// Three counts of 2^63 − 1 summed in 64 bits wrap to 2^63 − 3: a layer claiming that many routed
    /// slots passed the check that its counts sum to them. The sums are exact now, and the layer's check
    /// that its used slots hold its counts names the whole sum (2^63 − 2 slots used, which the wrapped sum passed).
    /// </summary>
    [Fact]
    public void CountsWhoseSumWouldWrapAreRefused()
    {
        using var model = Recorded(Options);
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        var layer = node["layers"]![0]!;
        for (var e = 0; e < Options.Experts; e++)
        {
            layer["expert_token_counts"]![e] = e < 3 ? long.MaxValue : 0;
        }

        layer["routed_slots"] = long.MaxValue - 2;
        layer["capacity_stats"]!["total_used"] = long.MaxValue - 1;
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal(
            $"layers[0]: capacity_stats.total_used is {long.MaxValue - 1} and slots_dropped 0 but expert_token_counts sum to {3 * (UInt128)long.MaxValue}; every slot an expert counts was used or dropped.",
            error.Message);
    }

    /// <summary>A layer's settings other than the model's are refused, not replaced with the model's without a word.</summary>
    [Theory]
    [InlineData("capacity_stats/slots_per_expert", "5", "layers[1]'s capacity_stats.slots_per_expert is 5 but the model's expert_capacity is 4; every layer has the model's.")]
    [InlineData("capacity_stats/slots_per_expert", null, "layers[1]'s capacity_stats.slots_per_expert is none but the model's expert_capacity is 4; every layer has the model's.")]
    [InlineData("utilization_decay", "0.25", "layers[1]'s utilization_decay is 0.25 but the model's utilization_decay is 0.5; every layer has the model's.")]
    [InlineData("experts", "7", "layers[1]'s experts is 7 but the model's experts is 8; every layer has the model's.")]
    public void ALayerWhoseSettingsAreNotTheModelsIsRefused(string path, string? value, string message)
    {
        using var model = Recorded(Options with { ExpertCapacity = 4 });
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        var (parent, name) = path.Split('/') is [var outer, var inner] ? (node["layers"]![1]![outer]!.AsObject(), inner) : (node["layers"]![1]!.AsObject(), path);
        if (value is null)
        {
            parent.Remove(name);
        }
        else
        {
            parent[name] = JsonNode.Parse(value);
        }

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal(message, error.Message);
    }

    /// <summary>The engines a model records on, whose every written state must read back.</summary>
    public static TheoryData<string> Engines => ["managed", "cpu"];

    /// <summary>
    /// Every model state the library writes reads back and writes again the same, so that no check of a
    /// layer refuses the library's own files: a capacity, decay, losses, padding, invalid ids, a merge, a reset.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void EveryModelTheLibraryWritesReadsBackTheSame(string engine)
    {
        var options = Options with { ExpertCapacity = 4 };
        using var fresh = Create(engine, options);
        AssertReadsBackTheSame(fresh);
        using var recorded = Recorded(options, engine, seed: 25);
        AssertReadsBackTheSame(recorded);
        recorded.RecordStep([], 0, 2);
        AssertReadsBackTheSame(recorded);
        using var skipping = Recorded(options with { SkipEmptySteps = true }, engine, seed: 27);
        skipping.RecordStep([], 0, 2);
        AssertReadsBackTheSame(skipping);
        using var other = Recorded(options, engine, seed: 26);
        using (var merged = ModelRoutingStats.Merge([recorded, other]))
        {
            AssertReadsBackTheSame(merged);
        }

        recorded.Reset();
        AssertReadsBackTheSame(recorded);
    }

    private static ModelRoutingStats Create(string engine, ModelRoutingStatsOptions options) =>
        engine == "managed" ? new ModelRoutingStats(options) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), options);

    /// <summary>Seven random steps with losses, padding and invalid ids.</summary>
    private static ModelRoutingStats Recorded(ModelRoutingStatsOptions options, string engine = "managed", int seed = 22)
    {
        var model = Create(engine, options);
        foreach (var step in ModelSteps.Random(options.Layers, options.Experts, 2, 7, seed))
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
        }

        return model;
    }

    private static void AssertReadsBackTheSame(ModelRoutingStats model)
    {
        var json = JsonSerializer.Serialize(model);
        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(json)!;
        Assert.Equal(json, JsonSerializer.Serialize(read));
    }

    /// <summary>
    /// A layer that a one-layer file could hold but no model step leaves behind: a dropped token, dropped slots
    /// without a capacity, more tokens than ids, more ids than steps of 2^31 − 1 hold, a capacity other than
    /// steps × experts × slots, used slots other than the counted less the dropped.
    /// </summary>
    [Theory]
    [InlineData(false, "tokens_dropped", "layers[1]'s tokens_dropped is 1; a model's step records ids, where a capacity drops slots (slots_dropped), never tokens.")]
    [InlineData(false, "slots_dropped", "layers[1]'s slots_dropped is 1 without an expert_capacity; only a capacity drops a model's slots.")]
    [InlineData(false, "total_tokens", "layers[1]'s total_tokens is {4:N0} but its routed_slots and invalid_expert_ids are {5:N0}; a token that is not padding has at least one id other than −1.")]
    [InlineData(false, "invalid_expert_ids", "layers[1]: routed_slots {2:N0} and invalid_expert_ids {3:N0} are 15,032,385,530 ids for total_routings 7; a batch records at most 2,147,483,647 ids (tokens × k), so at most 15,032,385,529.")]
    [InlineData(true, "total_capacity", "layers[1]'s capacity_stats.total_capacity is 256; each of its 7 steps adds 8 experts × 4 slots per expert, stopping at 9,223,372,036,854,775,807, so it is 224.")]
    [InlineData(false, "total_capacity", "layers[1]'s capacity_stats.total_capacity is 6,400; each of its 7 steps adds 8 experts × 100 slots per expert (the default: expert_capacity is none), stopping at 9,223,372,036,854,775,807, so it is 5,600.")]
    [InlineData(false, "total_used", "layers[1]'s capacity_stats.total_used is {0:N0} and slots_dropped 0, but its expert_token_counts sum to {1:N0}; each slot a step counts is used or dropped, never both, and the slots used stop at 9,223,372,036,854,775,807.")]
    public void ALayerNoModelStepLeavesIsRefused(bool capacity, string field, string message)
    {
        using var model = Recorded(Options with { ExpertCapacity = capacity ? 4 : null });
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        var layer = node["layers"]![1]!;
        var used = layer["capacity_stats"]!["total_used"]!.GetValue<ulong>();
        switch (field)
        {
            case "tokens_dropped":
                layer["tokens_dropped"] = 1;
                break;
            case "slots_dropped":
                layer["slots_dropped"] = 1;
                layer["capacity_stats"]!["capacity_exceeded_count"] = 1;
                layer["routing_efficiency"] = (float)(layer["routed_slots"]!.GetValue<ulong>() - 1) / layer["routed_slots"]!.GetValue<ulong>() * 100.0f;
                break;
            case "total_tokens":
                layer["total_tokens"] = Ids(layer) + 1;
                break;
            case "invalid_expert_ids":
                layer["invalid_expert_ids"] = (7UL * int.MaxValue) - layer["routed_slots"]!.GetValue<ulong>() + 1;
                break;
            case "total_capacity":
                layer["capacity_stats"]!["total_capacity"] = layer["capacity_stats"]!["total_capacity"]!.GetValue<ulong>() + (8UL * (capacity ? 4UL : 100UL));
                break;
            default:
                layer["capacity_stats"]!["total_used"] = used + 1;
                break;
        }

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        var routed = layer["routed_slots"]!.GetValue<ulong>();
        var invalid = layer["invalid_expert_ids"]!.GetValue<ulong>();
        var tokens = layer["total_tokens"]!.GetValue<ulong>();
        Assert.Equal(string.Format(System.Globalization.CultureInfo.InvariantCulture, message, used + 1, used, routed, invalid, tokens, tokens - 1), error.Message);
    }

    private static ulong Ids(JsonNode layer) => layer["routed_slots"]!.GetValue<ulong>() + layer["invalid_expert_ids"]!.GetValue<ulong>();

    /// <summary>
    /// A layer whose capacity stopped at 2^63 − 1 reads, and only that stopped total does once steps × experts × slots
    /// pass it: 4,096 experts of 2^31 − 1 slots over 2^20 + 1 steps, more than a test records.
    /// </summary>
    [Theory]
    [InlineData(0UL, true)]
    [InlineData(1UL, false)]
    public void ALayerWhoseCapacityStoppedReads(ulong belowMost, bool reads)
    {
        var options = new ModelRoutingStatsOptions { Layers = 1, Experts = 4096, ExpertCapacity = int.MaxValue };
        var layer = new MoeGpuStats.Engines.RoutingState { TotalRoutings = (1UL << 20) + 1, TotalCapacity = long.MaxValue - belowMost, ExpertTokenCounts = new ulong[4096] };
        Action check = () => MoeGpuStats.Serialization.ModelRoutingStatsJsonConverter.CheckRecordedByModel(layer, 0, options);
        if (reads)
        {
            check();
        }
        else
        {
            Assert.StartsWith("layers[0]'s capacity_stats.total_capacity is 9,223,372,036,854,775,806;", Assert.Throws<JsonException>(check).Message);
        }
    }

    /// <summary>A window_load row that is not an array is refused by its index, as a JsonException, not read as one.</summary>
    [Theory]
    [InlineData("\"x\"")]
    [InlineData("{}")]
    [InlineData("7")]
    public void AWindowLoadRowThatIsNotAnArrayIsRefused(string row)
    {
        using var model = Recorded(Options);
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        node["window_load"]![1] = JsonNode.Parse(row);
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal("window_load[1] must be an array of 8 counts (one per expert).", error.Message);
    }

    /// <summary>A layer of a model without steps holds no per-expert entries: one that holds them (all zero, as a layer's reader takes them) is refused.</summary>
    [Fact]
    public void ALayerWithPerExpertEntriesBeforeTheFirstStepIsRefused()
    {
        using var model = new ModelRoutingStats(Options);
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        var layer = node["layers"]![1]!;
        foreach (var name in new[] { "expert_utilization", "expert_token_counts", "expert_utilization_sums", "decayed_expert_utilization" })
        {
            if (layer[name] is not null)
            {
                layer[name] = JsonNode.Parse("[" + string.Join(",", Enumerable.Repeat(name == "expert_token_counts" ? "0" : "0.0", Options.Experts)) + "]");
            }
        }

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal("layers[1] holds total_routings 0 and expert_utilization of 8; the model holds steps 0 (each layer's total_routings) and 8 experts per layer (none before the first step).", error.Message);
    }

    /// <summary>A model setting given as null is its default, as a missing one; skip_empty_steps false is written as missing.</summary>
    [Fact]
    public void AModelSettingGivenAsNullOrFalseReadsAsItsDefault()
    {
        using var model = Recorded(Options);
        var json = JsonSerializer.Serialize(model);
        Assert.DoesNotContain("expert_capacity", json);
        Assert.DoesNotContain("skip_empty_steps", json);

        foreach (var settings in new[] { "\"expert_capacity\":null,\"skip_empty_steps\":null,", "\"skip_empty_steps\":false," })
        {
            using var read = JsonSerializer.Deserialize<ModelRoutingStats>(json.Replace("\"steps\":7", settings + "\"steps\":7"))!;
            Assert.Null(read.Options.ExpertCapacity);
            Assert.False(read.Options.SkipEmptySteps);
            Assert.Equal(0.5f, read.Options.UtilizationDecay);
            Assert.Equal(json, JsonSerializer.Serialize(read));
        }
    }

    /// <summary>
    /// A window load more than its steps hold (2^31 − 1 ids a layer a step), which the counts since the start allowed:
    /// one step of 2^62 ids was reported and planned on. The bound itself reads.
    /// </summary>
    [Theory]
    [InlineData(4611686018427387904UL, false, 1)]
    [InlineData(2147483648UL, false, 1)]
    [InlineData(2147483647UL, true, 1)]
    [InlineData(4294967295UL, false, 2)] // a merge of two parts: one window row of each, 2 × (2^31 − 1) ids a step
    [InlineData(4294967294UL, true, 2)]
    public void AWindowLoadItsStepsCannotHoldIsRefused(ulong load, bool reads, int mergedParts)
    {
        var merged = mergedParts == 1 ? "" : $"\"merged_parts\":{mergedParts},";
        var json = "{\"experts\":1,\"window\":1," + merged + "\"steps\":8589934592,\"window_steps\":1,\"window_load\":[[" + load.ToString(System.Globalization.CultureInfo.InvariantCulture) + "]],"
            + "\"layers\":[{\"total_routings\":8589934592,\"total_tokens\":4611686018427387904,\"tokens_dropped\":0,\"expert_utilization\":[1.0],"
            + "\"average_load_balance_loss\":0.0,\"average_router_z_loss\":0.0,\"routing_efficiency\":100.0,\"expert_token_counts\":[4611686018427387904],"
            + "\"routing_latency_stats\":{\"total_measurements\":0,\"total_latency_ms\":0,\"min_latency_ms\":null,\"max_latency_ms\":0,\"recent_latencies\":[]},"
            + "\"load_variance_history\":[" + string.Join(",", Enumerable.Repeat("0", 1000)) + "],\"capacity_stats\":{\"average_utilization\":0,\"peak_utilization\":0,\"capacity_exceeded_count\":0,"
            + "\"total_capacity\":858993459200,\"total_used\":4611686018427387904},\"experts\":1,\"expert_utilization_sums\":[8589934592.0],"
            + "\"load_balance_loss_sum\":0.0,\"router_z_loss_sum\":0.0}]}";
        if (reads)
        {
            using var model = JsonSerializer.Deserialize<ModelRoutingStats>(json)!;
            Assert.Equal([load], model.WindowLoad());
            return;
        }

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(json));
        var most = 2147483647UL * (ulong)mergedParts;
        var parts = mergedParts == 1 ? "" : $" and merged_parts = {mergedParts}";
        Assert.Equal(
            $"window_load[0] sums to {load:N0} ids over window_steps = 1{parts}; a step records at most 2,147,483,647 ids a layer (tokens × k), so at most {most:N0}.",
            error.Message);
    }

    /// <summary>A latency in a model's layer, which no model step measures and a model read back would drop, is refused.</summary>
    [Fact]
    public void ALatencyInAModelsLayerIsRefused()
    {
        using var model = Recorded(Options);
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        node["layers"]![2]!["routing_latency_stats"] = JsonNode.Parse("{\"total_measurements\":1,\"total_latency_ms\":5,\"min_latency_ms\":5,\"max_latency_ms\":5,\"recent_latencies\":[5]}");
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.Equal("layers[2] holds routing_latency_stats of 1 measurement; a model's layers measure no latency, and the model would read them and lose them.", error.Message);
    }

    [Theory]
    [InlineData(3, 1)]    // the window holds 3 of 7 steps: a load above the run's count is refused
    [InlineData(10, 0)]   // the window holds every step: a load other than the run's count is refused
    [InlineData(1, 0, 1)] // one step, which the window holds: the same
    public void AWindowLoadTheLayersCountsCannotHoldIsRefused(int window, int change, int steps = 7)
    {
        var options = Options with { Window = window };
        using var model = new ModelRoutingStats(options);
        foreach (var step in ModelSteps.Random(options.Layers, options.Experts, 2, steps, seed: 23))
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
        }

        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        var counts = node["layers"]![1]!["expert_token_counts"]!.AsArray().Select(count => count!.GetValue<ulong>()).ToArray();
        var expert = System.Array.FindIndex(counts, count => count > 0);
        var sinceStart = counts[expert];
        node["window_load"]![1]![expert] = change == 1 ? sinceStart + 1 : sinceStart - 1;
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));
        Assert.StartsWith($"window_load[1][{expert}]", error.Message);
        Assert.Contains("layers[1]", error.Message);
    }
}
