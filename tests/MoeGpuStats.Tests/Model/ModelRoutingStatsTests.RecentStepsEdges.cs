using System.Text.Json;

namespace MoeGpuStats.Tests.Model;

// The newest steps' load and balance (ModelRoutingStats.WindowLoad(int), ModelRoutingStats.Summary(int))
// against sums of the recorded ids in the corners the tests of ModelRoutingStatsTests.RecentSteps.cs does
// not reach: a window of one step, every recentSteps against every count of steps held, a ring wrapped many
// times, a layer's rows turning from a list to a dense row and back in every order, steps of no ids, a
// reset at a wrapped position, a snapshot, a merge recorded into, a model read from JSON then reset and
// recorded, and reads racing steps.
public sealed partial class ModelRoutingStatsTests
{
    /// <summary>A step whose every layer has <paramref name="ids"/> ids (≤ 32 ids: a list in the managed window; more: a row), seeded per layer.</summary>
    private static ModelSteps.Step StepOf(int layers, int experts, int ids, int seed)
    {
        var random = new Random(seed);
        var all = new int[Math.Max(1, layers * ids)];
        for (var i = 0; i < layers * ids; i++)
        {
            // Mostly valid ids, some -1 (empty slots) and some out of range: neither counts.
            var roll = random.Next(20);
            all[i] = roll == 0 ? -1 : roll == 1 ? experts + 1 : random.Next(experts);
        }

        return new ModelSteps.Step(all, ids, 1, ids, ids, new float[layers], []);
    }

    /// <summary>Records <paramref name="step"/>, adds it to <paramref name="recorded"/> and checks every recentSteps after it.</summary>
    private static void RecordAndAssertEveryRecent(ModelRoutingStats model, ModelRoutingStatsOptions options, List<ModelSteps.Step> recorded, ModelSteps.Step step, string when)
    {
        Record(model, step);
        recorded.Add(step);
        AssertEveryRecent(model, options, recorded, when);
    }

    /// <summary>Every recentSteps 1..Window against the ids' sums; Summary(recent).Window's loads and WindowSteps too.</summary>
    private static void AssertEveryRecent(ModelRoutingStats model, ModelRoutingStatsOptions options, IReadOnlyList<ModelSteps.Step> recorded, string when)
    {
        for (var recent = 1; recent <= options.Window; recent++)
        {
            var expected = ModelSteps.WindowLoad(options with { Window = recent }, recorded);
            Assert.True(expected.SequenceEqual(model.WindowLoad(recent)), $"WindowLoad({recent}) {when}: expected {string.Join(",", expected)}, got {string.Join(",", model.WindowLoad(recent))}");
            var summary = model.Summary(recent);
            Assert.Equal(Math.Min(recent, recorded.Count), summary.WindowSteps);
            ModelRoutingStatsTests.AssertBalance(expected, options.Experts, null, summary.Window);
        }
    }

    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void AWindowOfOneStepReadsTheLastStepAlone(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 8, Window = 1 };
        using var model = Create(engine, options);
        var recorded = new List<ModelSteps.Step>();
        foreach (var (ids, s) in new[] { 3, 40, 0, 32, 33, 1, 0, 0, 64, 2 }.Select((ids, s) => (ids, s)))
        {
            var step = StepOf(options.Layers, options.Experts, ids, seed: 100 + s);
            RecordAndAssertEveryRecent(model, options, recorded, step, $"after step {s} of {ids} ids");
            Assert.Equal(model.WindowLoad(), model.WindowLoad(1));
        }
    }

    /// <summary>
    /// A layer's ring row turning list → list, list → row, row → row, row → list (and to and from
    /// steps of no ids), at the 32-id edge, in a small ring wrapped many times; after every step,
    /// every recentSteps against the ids' sums.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void RowsTurningBetweenListsAndDenseRowsAcrossManyWrapsReadTheirIds(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 3, Experts = 40, Window = 3 };
        using var model = Create(engine, options);
        int[] sizes = [1, 32, 33, 32, 0, 64, 33, 0, 0, 5, 31, 100, 2, 33, 33, 33, 32, 32, 32, 0, 40, 1, 0, 70, 3, 3, 34, 0, 32];
        var recorded = new List<ModelSteps.Step>();
        for (var s = 0; s < sizes.Length * 2; s++)
        {
            var step = StepOf(options.Layers, options.Experts, sizes[s % sizes.Length], seed: 200 + s);
            RecordAndAssertEveryRecent(model, options, recorded, step, $"after step {s} ({sizes[s % sizes.Length]} ids)");
        }
    }

    /// <summary>recentSteps at, one below and one above the steps held while the window fills (the running sum against the ring).</summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void RecentStepsAroundTheStepsHeldWhileTheWindowFills(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 16, Window = 7 };
        using var model = Create(engine, options);
        var recorded = new List<ModelSteps.Step>();
        Assert.All(model.WindowLoad(1), load => Assert.Equal(0UL, load));
        Assert.Equal(0, model.Summary(1).WindowSteps);
        for (var s = 0; s < 3 * options.Window + 2; s++)
        {
            var step = StepOf(options.Layers, options.Experts, s % 3 == 0 ? 40 : s % 3 == 1 ? 4 : 0, seed: 300 + s);
            RecordAndAssertEveryRecent(model, options, recorded, step, $"after step {s}");
        }
    }

    /// <summary>A reset at a wrapped ring position: the steps before it never count again, whatever rows they left.</summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void AResetAtAWrappedPositionForgetsTheRingsOldRows(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 36, Window = 5 };
        using var model = Create(engine, options);
        for (var s = 0; s < 13; s++)
        {
            Record(model, StepOf(options.Layers, options.Experts, s % 2 == 0 ? 50 : 7, seed: 400 + s));
        }

        model.Reset();
        var recorded = new List<ModelSteps.Step>();
        AssertEveryRecent(model, options, recorded, "just after the reset");
        for (var s = 0; s < 12; s++)
        {
            var step = StepOf(options.Layers, options.Experts, s % 3 == 0 ? 9 : s % 3 == 1 ? 0 : 45, seed: 500 + s);
            RecordAndAssertEveryRecent(model, options, recorded, step, $"after step {s} since the reset");
        }
    }

    /// <summary>A snapshot reads the newest steps as the model did when taken, goes on recording on its own, and the model is unchanged by it.</summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ASnapshotReadsTheNewestStepsAndRecordsOnItsOwn(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 3, Experts = 12, Window = 4 };
        using var model = Create(engine, options);
        var recorded = new List<ModelSteps.Step>();
        for (var s = 0; s < 10; s++)
        {
            var step = StepOf(options.Layers, options.Experts, s % 2 == 0 ? 3 : 36, seed: 600 + s);
            Record(model, step);
            recorded.Add(step);
        }

        using var snapshot = model.Snapshot();
        AssertEveryRecent(snapshot, options, recorded, "in the snapshot");
        var forked = new List<ModelSteps.Step>(recorded);
        for (var s = 0; s < 6; s++)
        {
            var step = StepOf(options.Layers, options.Experts, s % 2 == 0 ? 40 : 2, seed: 700 + s);
            RecordAndAssertEveryRecent(snapshot, options, forked, step, $"after the snapshot's step {s}");
        }

        AssertEveryRecent(model, options, recorded, "in the model after its snapshot recorded");
    }

    /// <summary>
    /// A merge's newest steps are the ranks' newest summed, whether a rank's window is full (the merge's
    /// ring position 0) or neither is (the position after the merged steps); steps recorded into the
    /// merge then slide them out one by one.
    /// </summary>
    [Theory]
    [InlineData("managed", 8, 3)]
    [InlineData("managed", 3, 2)]
    [InlineData("managed", 1, 0)]
    [InlineData("cpu", 8, 3)]
    [InlineData("cpu", 3, 2)]
    public void AMergeRecordedIntoSlidesItsMergedStepsOut(string engine, int firstCount, int secondCount)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 10, Window = 5 };
        using var first = Create(engine, options);
        using var second = new ModelRoutingStats(options);
        var firstSteps = Enumerable.Range(0, firstCount).Select(s => StepOf(options.Layers, options.Experts, s % 2 == 0 ? 2 : 35, seed: 800 + s)).ToList();
        var secondSteps = Enumerable.Range(0, secondCount).Select(s => StepOf(options.Layers, options.Experts, s == 1 ? 0 : 6, seed: 900 + s)).ToList();
        firstSteps.ForEach(step => Record(first, step));
        secondSteps.ForEach(step => Record(second, step));

        using var merged = ModelRoutingStats.Merge([first, second]);
        var held = Math.Min(options.Window, Math.Max(firstCount, secondCount));
        Assert.Equal(held, merged.Summary(options.Window).WindowSteps);

        // The merge's window, oldest first: each rank's steps aligned from the newest, as the loads they sum.
        var window = Enumerable.Range(0, held).Select(age =>
        {
            var load = new ulong[options.Layers * options.Experts];
            foreach (var steps in new[] { firstSteps, secondSteps })
            {
                if (age < steps.Count)
                {
                    var one = ModelSteps.WindowLoad(options with { Window = 1 }, [steps[steps.Count - 1 - age]]);
                    for (var i = 0; i < load.Length; i++)
                    {
                        load[i] += one[i];
                    }
                }
            }

            return load;
        }).Reverse().ToList();

        for (var extra = 0; extra <= 7; extra++)
        {
            if (extra > 0)
            {
                var step = StepOf(options.Layers, options.Experts, extra % 2 == 0 ? 1 : 33, seed: 1000 + extra);
                Record(merged, step);
                window.Add(ModelSteps.WindowLoad(options with { Window = 1 }, [step]));
            }

            for (var recent = 1; recent <= options.Window; recent++)
            {
                var expected = new ulong[options.Layers * options.Experts];
                foreach (var load in window.Skip(Math.Max(0, window.Count - recent)))
                {
                    for (var i = 0; i < expected.Length; i++)
                    {
                        expected[i] += load[i];
                    }
                }

                Assert.True(expected.SequenceEqual(merged.WindowLoad(recent)), $"recent {recent} after {extra} steps into the merge");
                Assert.Equal(Math.Min(recent, window.Count), merged.Summary(recent).WindowSteps);
                if (recent == options.Window)
                {
                    Assert.True(expected.SequenceEqual(merged.WindowLoad()), $"the whole window after {extra} steps into the merge");
                }
            }
        }
    }

    /// <summary>A model read from JSON gets its ring at a reset: then every recentSteps reads, across wraps.</summary>
    [Fact]
    public void AModelReadFromJsonThenResetReadsItsNewStepsAcrossWraps()
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 34, Window = 4 };
        using var model = new ModelRoutingStats(options);
        for (var s = 0; s < 6; s++)
        {
            Record(model, StepOf(options.Layers, options.Experts, 20 + s * 5, seed: 1100 + s));
        }

        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(JsonSerializer.Serialize(model))!;
        var before = ModelSteps.Fingerprint(read);
        Assert.Throws<InvalidOperationException>(() => read.WindowLoad(1));
        Assert.Throws<InvalidOperationException>(() => read.Summary(3, new int[options.Experts]));
        Assert.Equal(before, ModelSteps.Fingerprint(read));

        read.Reset();
        var recorded = new List<ModelSteps.Step>();
        AssertEveryRecent(read, options, recorded, "after the reset");
        for (var s = 0; s < 11; s++)
        {
            var step = StepOf(options.Layers, options.Experts, s % 3 == 0 ? 33 : s % 3 == 1 ? 32 : 0, seed: 1200 + s);
            RecordAndAssertEveryRecent(read, options, recorded, step, $"after step {s} since the reset");
        }
    }

    /// <summary>
    /// Reads racing steps on another thread: every Summary(recent) is the state after some number of
    /// steps (its Steps says which) and every WindowLoad(recent) is one of those states, never a mix.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public async Task ReadsRacingStepsSeeTheStateBetweenTwoSteps(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 40, Window = 6 };
        using var model = Create(engine, options);
        var steps = Enumerable.Range(0, engine == "managed" ? 400 : 120)
            .Select(s => StepOf(options.Layers, options.Experts, s % 3 == 0 ? 48 : s % 3 == 1 ? 6 : s % 7, seed: 1300 + s)).ToList();
        const int Recent = 3;
        var states = Enumerable.Range(0, steps.Count + 1)
            .Select(count => ModelSteps.WindowLoad(options with { Window = Recent }, steps.Take(count).ToList())).ToArray();

        using var done = new ManualResetEventSlim();
        var writer = Task.Run(() =>
        {
            try
            {
                steps.ForEach(step => Record(model, step));
            }
            finally
            {
                done.Set();
            }
        }, TestContext.Current.CancellationToken);

        var reads = 0;
        while (!done.IsSet || reads < 10)
        {
            var summary = model.Summary(Recent);
            var state = states[(int)summary.Steps];
            for (var l = 0; l < options.Layers; l++)
            {
                Assert.Equal(state.Skip(l * options.Experts).Take(options.Experts).Aggregate(0UL, (a, b) => a + b), summary.Window.Layers[l].Load);
                Assert.Equal(state.Skip(l * options.Experts).Take(options.Experts).Max(), summary.Window.Layers[l].MaxLoad);
            }

            var load = model.WindowLoad(Recent);
            Assert.Contains(states.Skip((int)summary.Steps), candidate => candidate.SequenceEqual(load));
            reads++;
        }

        await writer;
        Assert.True(states[^1].SequenceEqual(model.WindowLoad(Recent)));
    }
}
