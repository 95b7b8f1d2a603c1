using System.Text.Json;

namespace MoeGpuStats.Tests.Model;

/// <summary>
/// <see cref="ModelRoutingStatsOptions.SkipEmptySteps"/>: a step in which no layer holds a token (no valid
/// row, or every valid row padding) is left out on every engine, from host ids and from device views, and
/// the model equals one fed the steps kept; a step with a token in any one layer is kept whole.
/// </summary>
public sealed partial class ModelRoutingStatsTests
{
    private static readonly ModelRoutingStatsOptions Skipping = Options with { SkipEmptySteps = true };

    [Theory]
    [MemberData(nameof(Engines))]
    public void SkippedEmptyStepsLeaveTheModelAsTheStepsKept(string engine)
    {
        using var model = Create(engine, Skipping);
        using var views = engine == "managed" ? null : new DeviceIds(TestAccelerators.Require(engine));
        var steps = WithEmptySteps(ModelSteps.Random(Skipping.Layers, Skipping.Experts, topK: 2, count: 24, seed: 29), Skipping.Layers);
        var kept = new List<ModelSteps.Step>();
        for (var s = 0; s < steps.Count; s++)
        {
            var step = steps[s];
            if (views is not null && s % 2 == 1)
            {
                views.Record(model, step);
            }
            else
            {
                model.RecordStep(step.Ids.AsSpan(0, (Skipping.Layers - 1) * step.Stride + step.Valid * step.TopK), step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
            }

            if (step.HoldsToken(Skipping.Layers))
            {
                kept.Add(step);
            }

            if (s % 5 == 4)
            {
                AssertLayersEqual(model, ModelSteps.SingleLayers(Skipping, kept), $"after {s + 1} steps, {kept.Count} kept");
            }
        }

        Assert.InRange(kept.Count, Skipping.Window + 1, steps.Count - 8);
        AssertLayersEqual(model, ModelSteps.SingleLayers(Skipping, kept), "at the end");
        Assert.Equal(ModelSteps.WindowLoad(Skipping, kept), model.WindowLoad());
        var summary = model.Summary();
        Assert.Equal((ulong)kept.Count, summary.Steps);
        Assert.Equal(Skipping.Window, summary.WindowSteps);
        for (var recent = 1; recent <= Skipping.Window; recent++)
        {
            Assert.Equal(ModelSteps.WindowLoad(Skipping, kept.TakeLast(recent).ToList()), model.WindowLoad(recent));
        }
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void EmptyStepsAreStepsByDefault(string engine)
    {
        using var model = Create(engine, Options);
        var steps = WithEmptySteps([], Options.Layers);
        foreach (var step in steps)
        {
            Record(model, step);
        }

        Assert.Equal((ulong)steps.Count, model.Summary().Steps);
        AssertLayersEqual(model, ModelSteps.SingleLayers(Options, steps), "every step recorded");
    }

    [Fact]
    public void TheSettingTravelsWithSnapshotsAndJson()
    {
        using var model = new ModelRoutingStats(Skipping);
        using var snapshot = model.Snapshot();
        Assert.True(snapshot.Options.SkipEmptySteps);
        var json = JsonSerializer.Serialize(model);
        Assert.Contains("\"skip_empty_steps\":true", json);
        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(json)!;
        Assert.True(read.Options.SkipEmptySteps);
        using var recording = new ModelRoutingStats(Options);
        Assert.DoesNotContain("skip_empty_steps", JsonSerializer.Serialize(recording));

        var wrong = json.Replace("\"skip_empty_steps\":true", "\"skip_empty_steps\":1");
        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(wrong));
        Assert.Contains("'skip_empty_steps' must be true or false", error.Message);
    }

    /// <summary>A part that leaves out empty steps and one that records them do not merge, in either order; parts that agree keep the setting.</summary>
    [Fact]
    public void ModelsThatDifferInSkippingEmptyStepsDoNotMerge()
    {
        using var skipping = new ModelRoutingStats(Skipping);
        using var counting = new ModelRoutingStats(Skipping with { SkipEmptySteps = false });
        var error = Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge([skipping, counting]));
        Assert.Equal("parts", error.ParamName);
        Assert.StartsWith($"Only models of the same shape merge: parts[0] is 3 layers × 16 experts, window 5, capacity 6, empty steps left out, parts[1] is 3 layers × 16 experts, window 5, capacity 6.", error.Message);
        Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge([counting, skipping]));
        using var alike = new ModelRoutingStats(Skipping);
        using var merged = ModelRoutingStats.Merge([skipping, alike]);
        Assert.True(merged.Options.SkipEmptySteps);
    }

    /// <summary>
    /// <paramref name="steps"/> with empty steps of every kind between them: no rows, rows none valid,
    /// valid rows all padding (rows past them not), and steps kept though most of them is padding (one
    /// layer's one row, one empty slot beside an invalid id).
    /// </summary>
    private static List<ModelSteps.Step> WithEmptySteps(List<ModelSteps.Step> steps, int layers)
    {
        const int topK = 2, rows = 4, stride = rows * topK;
        ModelSteps.Step Make(int valid, Func<int, int, int> id)
        {
            var ids = new int[layers * stride];
            for (var i = 0; i < ids.Length; i++)
            {
                ids[i] = id(i / stride, i % stride);
            }

            return new ModelSteps.Step(ids, rows, topK, stride, valid, Enumerable.Repeat(0.25f, layers).ToArray(), []);
        }

        ModelSteps.Step[] empty =
        [
            new ModelSteps.Step(new int[layers], 0, topK, 0, 0, new float[layers], []),
            Make(0, (_, i) => i % 7),
            Make(rows, (_, _) => -1),
            Make(2, (_, i) => i < 2 * topK ? -1 : 3),
        ];
        ModelSteps.Step[] kept =
        [
            Make(rows, (l, i) => l == layers - 1 && i == stride - 1 ? 5 : -1),
            Make(1, (_, i) => i == 1 ? 99 : -1),
        ];
        var mixed = new List<ModelSteps.Step>();
        for (var s = 0; s < Math.Max(steps.Count, 6); s++)
        {
            if (s < steps.Count)
            {
                mixed.Add(steps[s]);
            }

            mixed.Add(empty[s % empty.Length]);
            if (s % 3 == 0)
            {
                mixed.Add(kept[s / 3 % kept.Length]);
            }
        }

        return mixed;
    }
}
