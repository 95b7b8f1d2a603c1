using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>
/// <see cref="RoutingStats.MergedParts"/> and <see cref="ModelRoutingStats.MergedParts"/>: a merge counts the
/// recordings it combines (a merge of merges every rank), its snapshot keeps the count, statistics recorded
/// here or read from a snapshot without the field count 1, and the count is fixed for the object's life.
/// </summary>
public sealed class MergedPartsTests
{
    private static readonly ModelRoutingStatsOptions ModelOptions = new() { Layers = 2, Experts = 8, Window = 3 };

    [Fact]
    public void ALayerMergeCountsItsPartsAndItsSnapshotKeepsThem()
    {
        using var first = Recorded(seed: 1);
        using var second = Recorded(seed: 2);
        using var third = Recorded(seed: 3);
        Assert.Equal(1, first.MergedParts);

        using var pair = RoutingStats.Merge([first, second]);
        using var all = RoutingStats.Merge([pair, third]);
        using var one = RoutingStats.Merge([first]);
        Assert.Equal((2, 3, 1), (pair.MergedParts, all.MergedParts, one.MergedParts));

        var json = JsonSerializer.Serialize(all);
        Assert.Equal(3, JsonNode.Parse(json)!["merged_parts"]!.GetValue<int>());
        Assert.Null(JsonNode.Parse(JsonSerializer.Serialize(first))!["merged_parts"]);
        using var read = JsonSerializer.Deserialize<RoutingStats>(json)!;
        Assert.Equal(3, read.MergedParts);
        Assert.Equal(json, JsonSerializer.Serialize(read));

        using var copy = all.Snapshot();
        Assert.Equal(3, copy.MergedParts);
        all.Reset();
        Assert.Equal((0UL, 3), (all.TotalRoutings, all.MergedParts));
    }

    [Fact]
    public void AModelMergeCountsItsPartsInTheModelAndEveryLayer()
    {
        using var first = RecordedModel(seed: 1);
        using var second = RecordedModel(seed: 2);

        using var merged = ModelRoutingStats.Merge([first, second]);
        using var again = ModelRoutingStats.Merge([merged, first]);
        Assert.Equal((1, 2, 3), (first.MergedParts, merged.MergedParts, again.MergedParts));
        using (var layer = again.Layer(1))
        {
            Assert.Equal(3, layer.MergedParts);
        }

        var json = JsonSerializer.Serialize(again);
        var root = JsonNode.Parse(json)!;
        Assert.Equal(3, root["merged_parts"]!.GetValue<int>());
        Assert.Null(root["layers"]![0]!["merged_parts"]);
        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(json)!;
        Assert.Equal(3, read.MergedParts);
        Assert.Equal(json, JsonSerializer.Serialize(read));
        using var copy = again.Snapshot();
        Assert.Equal(3, copy.MergedParts);
        again.Reset();
        Assert.Equal((0UL, 3), (again.Summary().Steps, again.MergedParts));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-2")]
    [InlineData("1048577")]
    [InlineData("\"2\"")]
    [InlineData("2.5")]
    [InlineData("99999999999")]
    public void AMergedPartsOutOfRangeIsRefusedByName(string value)
    {
        using var stats = Recorded(seed: 1);
        var node = JsonNode.Parse(JsonSerializer.Serialize(stats))!;
        node["merged_parts"] = JsonNode.Parse(value);
        using var model = RecordedModel(seed: 1);
        var modelNode = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        modelNode["merged_parts"] = JsonNode.Parse(value);

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString()));
        var modelError = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(modelNode.ToJsonString()));

        Assert.Contains("'merged_parts'", error.Message);
        Assert.Contains("'merged_parts'", modelError.Message);
    }

    /// <summary>A model writes merged_parts once, beside its steps; one in a layer would be read and lost, so it is refused.</summary>
    [Fact]
    public void AMergedPartsInAModelsLayerIsRefused()
    {
        using var model = RecordedModel(seed: 1);
        var node = JsonNode.Parse(JsonSerializer.Serialize(model))!;
        node["layers"]![1]!["merged_parts"] = 7;

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(node.ToJsonString()));

        Assert.Equal("layers[1] holds merged_parts, which is the model's field (beside steps), not a layer's.", error.Message);
    }

    /// <summary>A merge of the most parts is taken; one past the bound is refused naming it, the parts unchanged, not wrapped.</summary>
    [Fact]
    public void AMergeOfTheMostPartsIsTakenAndOfMoreRefused()
    {
        using var stats = Recorded(seed: 1);
        var node = JsonNode.Parse(JsonSerializer.Serialize(stats))!;
        node["merged_parts"] = RoutingStats.MaxMergedParts - 1;
        using var nearlyFull = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
        using var atTheMost = RoutingStats.Merge([nearlyFull, stats]);
        Assert.Equal(RoutingStats.MaxMergedParts, atTheMost.MergedParts);

        node["merged_parts"] = RoutingStats.MaxMergedParts;
        using var full = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;

        var error = Assert.Throws<ArgumentException>(() => RoutingStats.Merge([full, stats]));

        Assert.Equal("parts", error.ParamName);
        Assert.Contains("1,048,577 recordings (merged_parts); at most 1,048,576 merge", error.Message);
        Assert.Equal((RoutingStats.MaxMergedParts, 1), (full.MergedParts, stats.MergedParts));
    }

    private static RoutingStats Recorded(int seed)
    {
        var stats = new RoutingStats(new RoutingStatsOptions { Experts = 8 });
        var random = new Random(seed);
        for (var batch = 0; batch < 4; batch++)
        {
            stats.RecordRouting([.. Enumerable.Range(0, 12).Select(_ => random.Next(8))], tokens: 6, topK: 2);
        }

        return stats;
    }

    private static ModelRoutingStats RecordedModel(int seed)
    {
        var model = new ModelRoutingStats(ModelOptions);
        foreach (var step in ModelSteps.Random(ModelOptions.Layers, ModelOptions.Experts, 2, 5, seed))
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
        }

        return model;
    }
}
