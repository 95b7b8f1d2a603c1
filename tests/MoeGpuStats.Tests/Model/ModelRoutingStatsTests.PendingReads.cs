namespace MoeGpuStats.Tests.Model;

// A read begun without waiting (ModelRoutingStats.BeginRead): on every engine it is the blocking reads' figures
// at the step it was begun, whatever is recorded, read, begun or reset after it; refused in the caller's words with
// nothing begun; its results outlive the model.
public sealed partial class ModelRoutingStatsTests
{
    private static readonly int[] PendingRanks = [0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3, 0, 1, 2, 4];

    public static TheoryData<string, int?, bool> PendingReadCases()
    {
        var data = new TheoryData<string, int?, bool>();
        foreach (var engine in Engines)
        {
            data.Add(engine, null, false);
            data.Add(engine, 2, false);
            data.Add(engine, null, true);
            data.Add(engine, 3, true);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(PendingReadCases))]
    public void APendingReadIsTheBlockingReadsAtTheStepItWasBegun(string engine, int? recentSteps, bool ranked)
    {
        using var model = Create(engine, RecentOptions);
        var steps = ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count: 12, seed: 37);
        var ranks = ranked ? PendingRanks : null;
        ModelRoutingSummary Blocking() => (recentSteps, ranks) switch
        {
            (null, null) => model.Summary(),
            ({ } recent, null) => model.Summary(recent),
            (null, { } placement) => model.Summary(placement),
            ({ } recent, { } placement) => model.Summary(recent, placement),
        };

        var pending = new List<(PendingModelRead Read, ModelRoutingSummary Summary, ulong[] Load)>();
        try
        {
            foreach (var step in steps)
            {
                Record(model, step);
                pending.Add((model.BeginRead(recentSteps, ranks), Blocking(), model.WindowLoad()));
            }

            // Every read was begun before later steps, blocking reads, other pending reads and a reset; each is its own step's.
            model.Reset();
            for (var s = 0; s < pending.Count; s++)
            {
                var (read, summary, load) = pending[s];
                Assert.Equal(summary, read.Summary);
                Assert.Equal(load, read.WindowLoad);
                Assert.True(read.IsCompleted, $"step {s + 1}: complete once its results were taken");
                Assert.Equal((ulong)(s + 1), read.Summary.Steps);
            }
        }
        finally
        {
            pending.ForEach(p => p.Read.Dispose());
        }
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void WaitGivesTheReadingOfTheStepsBeforeTheBegin(string engine)
    {
        using var model = Create(engine, RecentOptions);
        var steps = ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count: 4, seed: 41);
        foreach (var step in steps.Take(3))
        {
            Record(model, step);
        }

        var expected = model.Summary();
        using var read = model.BeginRead();
        Record(model, steps[3]);
        read.Wait();

        Assert.True(read.IsCompleted);
        Assert.Equal(expected, read.Summary);
        Assert.Equal(4UL, model.Summary().Steps);
    }

    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ABadPendingReadIsRefusedInTheCallersWordsWithNothingBegun(string engine)
    {
        using var model = Create(engine, RecentOptions);
        var steps = ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count: 3, seed: 43);
        foreach (var step in steps)
        {
            Record(model, step);
        }

        var before = model.Summary();
        var tooFew = Assert.Throws<ArgumentOutOfRangeException>(() => model.BeginRead(recentSteps: 0));
        Assert.Equal("recentSteps", tooFew.ParamName);
        Assert.Contains("give 1 to 6", tooFew.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.BeginRead(recentSteps: RecentOptions.Window + 1));
        var shortPlacement = Assert.Throws<ArgumentException>(() => model.BeginRead(expertRanks: [0, 1]));
        Assert.Equal("expertRanks", shortPlacement.ParamName);
        var badRank = Assert.Throws<ArgumentException>(() => model.BeginRead(expertRanks: [.. PendingRanks[..^1], RecentOptions.Experts]));
        Assert.Equal("expertRanks", badRank.ParamName);

        Assert.Equal(before, model.Summary());
        using var read = model.BeginRead(expertRanks: PendingRanks);
        Assert.Equal(model.Summary(PendingRanks), read.Summary);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void APendingReadsResultsOutliveTheModel(string engine)
    {
        var model = Create(engine, RecentOptions);
        RecordRandomSteps(model, count: 3, seed: 47);

        var (summary, load) = (model.Summary(), model.WindowLoad());
        using var read = model.BeginRead();
        model.Dispose();

        Assert.Equal(summary, read.Summary);
        Assert.Equal(load, read.WindowLoad);
        Assert.Throws<ObjectDisposedException>(() => model.BeginRead());
    }

    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void APendingReadDisposedUnreadSaysSoAndResultsTakenBeforeADisposeStay(string engine)
    {
        using var model = Create(engine, RecentOptions);
        Record(model, ModelSteps.Random(RecentOptions.Layers, RecentOptions.Experts, topK: 2, count: 1, seed: 53)[0]);
        var read = model.BeginRead();
        read.Dispose();
        read.Dispose();

        Assert.Throws<ObjectDisposedException>(() => read.IsCompleted);
        var disposed = Assert.Throws<ObjectDisposedException>(() => read.Summary);
        Assert.Equal("This read was disposed before its results were taken: begin another with BeginRead.", disposed.Message);
        Assert.Throws<ObjectDisposedException>(() => read.WindowLoad);
        Assert.Throws<ObjectDisposedException>(read.Wait);
        Assert.Equal(1UL, model.Summary().Steps);

        // Results taken before the dispose stay, as Python's result() after close().
        var taken = model.BeginRead();
        var summary = taken.Summary;
        taken.Dispose();
        Assert.True(taken.IsCompleted);
        Assert.Equal(summary, taken.Summary);
        Assert.Equal(model.WindowLoad(), taken.WindowLoad);
    }

    /// <summary>
    /// On the managed engine and ILGPU's CPU accelerator a read is complete when BeginRead returns, before its results
    /// are taken; each get of its window load is a new array, so that changing one leaves the next as read.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void APendingReadIsCompleteAtItsBeginOnTheHostAndEachWindowLoadIsItsOwn(string engine)
    {
        using var model = Create(engine, RecentOptions);
        RecordRandomSteps(model, count: 3, seed: 61);

        var expected = model.WindowLoad();
        using var read = model.BeginRead();
        Assert.True(read.IsCompleted, "a read on the host was not complete at its begin");

        var load = read.WindowLoad;
        Assert.Equal(expected, load);
        Assert.Contains(load, slots => slots > 0);
        Array.Clear(load);
        Assert.Equal(expected, read.WindowLoad);
        Assert.NotSame(read.WindowLoad, read.WindowLoad);
    }

    [Fact]
    public void APendingReadOfAWindowWithoutItsRingIsRefusedAsTheBlockingRead()
    {
        using var model = Create("managed", RecentOptions);
        RecordRandomSteps(model, count: 4, seed: 59);

        using var restored = System.Text.Json.JsonSerializer.Deserialize<ModelRoutingStats>(System.Text.Json.JsonSerializer.Serialize(model))!;
        var blocking = Assert.Throws<InvalidOperationException>(() => restored.Summary(2));
        var pending = Assert.Throws<InvalidOperationException>(() => restored.BeginRead(recentSteps: 2));
        Assert.Equal(blocking.Message, pending.Message);
        using var whole = restored.BeginRead();
        Assert.Equal(model.Summary(), whole.Summary);
    }
}
