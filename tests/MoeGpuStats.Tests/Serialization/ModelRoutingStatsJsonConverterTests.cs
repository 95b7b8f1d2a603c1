using System.Text.Json;

namespace MoeGpuStats.Tests.Model;

/// <summary>A model through JSON and merged across ranks.</summary>
public sealed class ModelFileAndMergeTests
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
    [InlineData("\"steps\":7", "\"steps\":8", "layers[0]")]
    [InlineData("\"experts\":8", "\"experts\":9", "window_load[0]")]
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

    [Fact]
    public void MergedLayersEqualMergedSingleLayersAndTheWindowsAlignFromTheNewest()
    {
        var a = ModelSteps.Random(Options.Layers, Options.Experts, 2, 4, seed: 31);
        var b = ModelSteps.Random(Options.Layers, Options.Experts, 2, 4, seed: 32);
        var options = Options with { UtilizationDecay = null };   // RoutingStats.Merge does not merge the decayed utilization
        using var first = new ModelRoutingStats(options);
        using var second = new ModelRoutingStats(options);
        foreach (var (model, steps) in new[] { (first, a), (second, b) })
        {
            foreach (var step in steps)
            {
                model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
            }
        }

        using var merged = ModelRoutingStats.Merge([first, second]);
        var singles = ModelSteps.SingleLayers(options, a).Zip(ModelSteps.SingleLayers(options, b), (x, y) => RoutingStats.Merge([x, y])).ToArray();
        for (var l = 0; l < options.Layers; l++)
        {
            Assert.Equal(JsonSerializer.Serialize(singles[l]), JsonSerializer.Serialize(merged.Layer(l)));
        }

        var window = ModelSteps.WindowLoad(Options, a).Zip(ModelSteps.WindowLoad(Options, b), (x, y) => x + y).ToArray();
        Assert.Equal(window, merged.WindowLoad());

        // The next step evicts the oldest step of both ranks, not another.
        var next = ModelSteps.Random(Options.Layers, Options.Experts, 2, 1, seed: 33);
        merged.RecordStep(next[0].Ids, next[0].Valid, next[0].TopK, next[0].Stride);
        var expected = ModelSteps.WindowLoad(Options, [.. a.Skip(2), next[0]])
            .Zip(ModelSteps.WindowLoad(Options, [.. b.Skip(2)]), (x, y) => x + y).ToArray();
        Assert.Equal(expected, merged.WindowLoad());
    }

    [Fact]
    public void ModelsOfDifferentShapesDoNotMerge()
    {
        using var first = new ModelRoutingStats(Options);
        using var second = new ModelRoutingStats(Options with { Experts = 16 });
        var error = Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge([first, second]));
        Assert.Contains("same shape", error.Message);
        Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge([]));
    }
}
