using System.Text.Json;

namespace MoeGpuStats.Tests.Model;

// The window cut to its newest steps (ModelRoutingStats.WindowLoad(int), ModelRoutingStats.Summary(int)):
// on every engine, the sums of those steps' ids computed here, whichever of a step's layers the window
// keeps as lists or as rows, across the ring's wrap and a reset; refused in the caller's words where no
// such steps can be read.
public sealed partial class ModelRoutingStatsTests
{
    private static readonly ModelRoutingStatsOptions RecentOptions = new() { Layers = 3, Experts = 16, Window = 6 };

    /// <summary>Records <paramref name="count"/> random steps of top-2 ids of <see cref="RecentOptions"/>'s shape (<see cref="ModelSteps.Random"/> from <paramref name="seed"/>).</summary>
    private static void RecordRandomSteps(ModelRoutingStats model, int count, int seed)
    {
        foreach (var step in ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count, seed))
        {
            Record(model, step);
        }
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void TheNewestStepsLoadAndBalanceAreThoseStepsIdsSummed(string engine)
    {
        using var model = Create(engine, RecentOptions);
        // Steps of 0 to 39 tokens of 2 ids: a layer's step of at most 32 ids is kept as a list, a larger one as a row.
        var steps = ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count: 17, seed: 29);
        var recorded = new List<ModelSteps.Step>();
        int[] ranks = [0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3, 0, 1, 2, 4];
        foreach (var step in steps)
        {
            Record(model, step);
            recorded.Add(step);
            foreach (var recent in new[] { 1, 2, 5, RecentOptions.Window })
            {
                var expected = ModelSteps.WindowLoad(RecentOptions with { Window = recent }, recorded);
                var when = $"{recent} of {recorded.Count} steps";
                Assert.True(expected.SequenceEqual(model.WindowLoad(recent)), when);

                var summary = model.Summary(recent);
                Assert.Equal(Math.Min(recent, recorded.Count), summary.WindowSteps);
                Assert.Equal((ulong)recorded.Count, summary.Steps);
                AssertBalance(expected, RecentOptions.Experts, null, summary.Window);
                Assert.Equal(model.Summary().SinceStart, summary.SinceStart);
                AssertBalance(expected, RecentOptions.Experts, ranks, model.Summary(recent, ranks).Window);
            }
        }

        Assert.Equal(model.WindowLoad(), model.WindowLoad(RecentOptions.Window));
        Assert.Equal(model.Summary(), model.Summary(RecentOptions.Window));
        Assert.Equal(model.Summary(ranks), model.Summary(RecentOptions.Window, ranks));
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void AfterAResetOnlyTheStepsSinceCount(string engine)
    {
        using var model = Create(engine, RecentOptions);
        var steps = ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count: 11, seed: 31);
        foreach (var step in steps.Take(8))
        {
            Record(model, step);
        }

        model.Reset();
        Assert.All(model.WindowLoad(3), load => Assert.Equal(0UL, load));
        Assert.Equal(0, model.Summary(3).WindowSteps);
        foreach (var step in steps.Skip(8))
        {
            Record(model, step);
        }

        // Three steps since the reset: asking for two reads two of them, asking for five reads the three.
        Assert.Equal(ModelSteps.WindowLoad(RecentOptions with { Window = 2 }, steps.Skip(8).ToList()), model.WindowLoad(2));
        Assert.Equal(ModelSteps.WindowLoad(RecentOptions, steps.Skip(8).ToList()), model.WindowLoad(5));
        Assert.Equal(3, model.Summary(5).WindowSteps);
    }

    /// <summary>Ranks merged step by step from the newest: the newest steps of the merge are the sums of the ranks' newest steps.</summary>
    [Fact]
    public void AMergesNewestStepsAreTheRanksNewestStepsSummed()
    {
        using var first = new ModelRoutingStats(RecentOptions);
        using var second = new ModelRoutingStats(RecentOptions);
        foreach (var (model, seed, count) in new[] { (first, 37, 9), (second, 41, 4) })
        {
            RecordRandomSteps(model, count, seed);
        }

        using var merged = ModelRoutingStats.Merge([first, second]);

        foreach (var recent in new[] { 1, 3, 4, 5 })
        {
            Assert.Equal(first.WindowLoad(recent).Zip(second.WindowLoad(recent), (a, b) => a + b), merged.WindowLoad(recent));
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(7)]
    [InlineData(int.MaxValue)]
    public void StepsOutsideTheWindowAreRefusedNamingTheWindow(int recent)
    {
        using var model = new ModelRoutingStats(RecentOptions);
        model.RecordStep(new int[RecentOptions.Layers * 2], tokens: 1, topK: 2);
        var before = ModelSteps.Fingerprint(model);

        foreach (var call in new Action[] { () => model.WindowLoad(recent), () => model.Summary(recent), () => model.Summary(recent, new int[RecentOptions.Experts]) })
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(call);
            Assert.Equal("recentSteps", error.ParamName);
            Assert.StartsWith(FormattableString.Invariant($"recentSteps is {recent}; give 1 to 6, the model's window."), error.Message);
        }

        Assert.Equal(before, ModelSteps.Fingerprint(model));
    }

    /// <summary>JSON keeps the window's load, not its steps: the whole window reads, fewer steps are refused, and after a reset (it takes a ring at its next step) they read.</summary>
    [Fact]
    public void AModelReadFromJsonReadsItsWholeWindowAndRefusesFewerSteps()
    {
        using var model = new ModelRoutingStats(RecentOptions);
        var steps = ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count: 4, seed: 43);
        foreach (var step in steps)
        {
            Record(model, step);
        }

        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(JsonSerializer.Serialize(model))!;

        Assert.Equal(model.WindowLoad(), read.WindowLoad(4));
        Assert.Equal(model.WindowLoad(), read.WindowLoad(6));
        var error = Assert.Throws<InvalidOperationException>(() => read.WindowLoad(3));
        Assert.Equal("recentSteps is 3, fewer than the 4 steps the window holds, but this model's window keeps its load and not its ring of steps (a model read from JSON, or a merge or snapshot of one): read the whole window (recentSteps 4 to 6).", error.Message);
        Assert.Throws<InvalidOperationException>(() => read.Summary(3));
        Assert.Equal(model.Summary(), read.Summary(4));

        read.Reset();
        read.RecordStep(steps[0].Ids, steps[0].Valid, steps[0].TopK, steps[0].Stride, steps[0].LoadBalanceLosses, steps[0].RouterZLosses);
        Assert.Equal(ModelSteps.WindowLoad(RecentOptions, steps.Take(1).ToList()), read.WindowLoad(1));
    }

    /// <summary>
    /// A file's window costs no memory until the model records: a reset of a model read from JSON whose window
    /// would take gigabytes allocates nothing (it took the whole ring), and the model reads and saves as empty.
    /// </summary>
    [Fact]
    public void AResetOfAModelReadFromJsonTakesItsRingOnlyAtItsNextStep()
    {
        using var model = new ModelRoutingStats(RecentOptions);
        Record(model, ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count: 1, seed: 44)[0]);
        var json = System.Text.Json.Nodes.JsonNode.Parse(JsonSerializer.Serialize(model))!.AsObject();
        json["window"] = 40_000_000;
        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(json.ToJsonString())!;

        var before = GC.GetAllocatedBytesForCurrentThread();
        read.Reset();
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);

        Assert.Equal(new ulong[RecentOptions.Layers * RecentOptions.Experts], read.WindowLoad(1));
        using var fresh = new ModelRoutingStats(RecentOptions);
        Assert.Equal(fresh.Summary(), read.Summary());
        var saved = System.Text.Json.Nodes.JsonNode.Parse(JsonSerializer.Serialize(read))!;
        Assert.Equal((0, 0, 40_000_000), ((int)saved["steps"]!, (int)saved["window_steps"]!, (int)saved["window"]!));
    }
}
