using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Tests.Model;

/// <summary>
/// A whole model against single-layer statistics fed each layer alone, on the managed engine and on
/// every accelerator: every layer to the bit, the window's load, the summary; bad input, refused in the
/// caller's words with the statistics left as they were; and models merged across ranks.
/// </summary>
public sealed partial class ModelRoutingStatsTests
{
    public static TheoryData<string> Engines => ["managed", "cpu", TestAccelerators.CpuWithFourMultiprocessors, "cuda", "opencl"];

    private static readonly ModelRoutingStatsOptions Options = new()
    {
        Layers = 3,
        Experts = 16,
        Window = 5,
        ExpertCapacity = 6,
        UtilizationDecay = 0.8f,
    };

    internal static ModelRoutingStats Create(string engine, ModelRoutingStatsOptions options) =>
        engine == "managed" ? new ModelRoutingStats(options) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), options);

    [Theory]
    [MemberData(nameof(Engines))]
    public void EveryLayerEqualsSingleLayerStatisticsFedThatLayerAlone(string engine)
    {
        using var model = Create(engine, Options);
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, topK: 2, count: 23, seed: 7);
        var recorded = new List<ModelSteps.Step>();
        using var accelerator = engine == "managed" ? null : new DeviceIds(TestAccelerators.Require(engine));
        foreach (var step in steps)
        {
            if (accelerator is null || step.Valid == step.Tokens && recorded.Count % 2 == 0)
            {
                var rows = step.Ids.AsSpan(0, (Options.Layers - 1) * step.Stride + step.Valid * step.TopK);
                model.RecordStep(rows, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
            }
            else
            {
                accelerator.Record(model, step);
            }

            recorded.Add(step);
            if (recorded.Count % 6 == 0)
            {
                AssertLayersEqual(model, ModelSteps.SingleLayers(Options, recorded), $"after {recorded.Count} steps");
            }
        }

        AssertLayersEqual(model, ModelSteps.SingleLayers(Options, recorded), "at the end");
        Assert.Equal(ModelSteps.WindowLoad(Options, recorded), model.WindowLoad());
    }

    /// <summary>
    /// A managed model's step allocates nothing once warm: its checks word no message unless they refuse, with losses,
    /// strides, a window that wraps, and steps small (a list of pairs in the window) and large (a whole row).
    /// </summary>
    [Fact]
    public void AManagedStepAllocatesNothing()
    {
        const int layers = 4, experts = 64, topK = 2, tokenStride = layers * topK;
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = layers, Experts = experts, Window = 16 });
        var random = new Random(5);
        int[][] steps = [.. new[] { 1, 64 }.Select(tokens => Enumerable.Range(0, tokens * tokenStride).Select(_ => random.Next(-1, experts)).ToArray())];
        var losses = Enumerable.Range(0, layers).Select(l => 0.1f * l).ToArray();
        void Step(int i)
        {
            var ids = steps[i % steps.Length];
            model.RecordStep(ids, ids.Length / tokenStride, topK, layerStride: topK, loadBalanceLosses: losses, routerZLosses: losses, tokenStride: tokenStride);
        }

        for (var i = 0; i < 100; i++)
        {
            Step(i);
        }

        // A round may see the runtime's tiered recompilation land, as RecordRouting's test says: up to five.
        long allocated = -1;
        var rounds = 0;
        for (; rounds < 5 && allocated != 0; rounds++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 1000; i++)
            {
                Step(i);
            }

            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Assert.Equal(0, allocated);
        Assert.Equal(100UL + (1000UL * (ulong)rounds), model.Layer(0).TotalRoutings);
    }

    /// <summary>
    /// A step on CUDA allocates nothing on the host once warm, with a device count of valid tokens and device losses
    /// (ILGPU's CPU accelerator is left out: an allocation trace shows its launches allocating memory buffers of its
    /// own runtime, about 0.5 KB a step, where the model's code allocates none).
    /// </summary>
    [Fact]
    public void ACudaStepAllocatesNothing()
    {
        var accelerator = TestAccelerators.Require("cuda");
        const int layers = 4, experts = 64, topK = 2, tokens = 64;
        using var model = ModelRoutingStats.OnDevice(accelerator, new ModelRoutingStatsOptions { Layers = layers, Experts = experts, Window = 16 });
        using var ids = accelerator.Allocate1D<int>(layers * tokens * topK);
        using var valid = accelerator.Allocate1D([tokens - 3]);
        using var losses = accelerator.Allocate1D(Enumerable.Range(0, layers).Select(l => 0.1f * l).ToArray());
        ids.MemSetToZero();
        void Step() => model.RecordStep(ids.View, tokens, topK, validTokens: valid.View, loadBalanceLosses: losses.View, routerZLosses: losses.View);
        for (var i = 0; i < 100; i++)
        {
            Step();
        }

        long allocated = -1;
        for (var round = 0; round < 5 && allocated != 0; round++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 1000; i++)
            {
                Step();
            }

            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Assert.Equal(0, allocated);
    }

    [Fact]
    public void TheManagedEngineRecordsFromDeviceViews()
    {
        using var model = new ModelRoutingStats(Options);
        using var ids = new DeviceIds(TestAccelerators.Require("cpu"));
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, topK: 2, count: 9, seed: 8);
        foreach (var step in steps)
        {
            ids.Record(model, step);
        }

        AssertLayersEqual(model, ModelSteps.SingleLayers(Options, steps), "from views");
        Assert.Equal(ModelSteps.WindowLoad(Options, steps), model.WindowLoad());
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void SummaryEqualsADirectComputationFromTheCounts(string engine)
    {
        var options = Options with { Layers = 4, Experts = 8, Window = 3 };
        using var model = Create(engine, options);
        var steps = ModelSteps.Random(options.Layers, options.Experts, topK: 2, count: 9, seed: 11);
        foreach (var step in steps)
        {
            Record(model, step);
        }

        var window = ModelSteps.WindowLoad(options, steps);
        var sinceStart = ModelSteps.WindowLoad(options with { Window = int.MaxValue / 64 }, steps);
        var summary = model.Summary();
        Assert.Equal((ulong)steps.Count, summary.Steps);
        Assert.Equal(3, summary.WindowSteps);
        AssertBalance(window, options.Experts, null, summary.Window);
        AssertBalance(sinceStart, options.Experts, null, summary.SinceStart);

        int[] ranks = [0, 0, 1, 1, 2, 2, 3, 1];
        var byRank = model.Summary(ranks);
        AssertBalance(window, options.Experts, ranks, byRank.Window);
        AssertBalance(sinceStart, options.Experts, ranks, byRank.SinceStart);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void AnEmptyModelReadsAsASingleLayerWithoutRecords(string engine)
    {
        using var model = Create(engine, Options);
        using var single = new RoutingStats(Options.LayerOptions);
        Assert.Equal(ModelSteps.Fingerprint(single), ModelSteps.Fingerprint(model.Layer(2)));
        Assert.All(model.WindowLoad(), load => Assert.Equal(0UL, load));
        var summary = model.Summary();
        Assert.Equal(0UL, summary.Steps);
        Assert.Equal(1.0, summary.Window.TokenWeightedBalancedness);
        Assert.All(summary.SinceStart.Layers, layer => Assert.Equal(Options.Experts, layer.DeadExperts));
    }

    /// <summary>
    /// Engines by the steps recorded before a reset, the last of which a device engine holds counted but not folded: 5
    /// ends on a step of invalid ids, 8 on one of empty slots (in the other batch buffer), 9 on one of whole padded tokens.
    /// </summary>
    public static TheoryData<string, int> ResetEngines =>
        new(((IEnumerable<TheoryDataRow<string>>)Engines).SelectMany(engine => new[] { 5, 8, 9 }.Select(steps => (engine.Data, steps))));

    /// <summary>A reset with a step pending (no read since it) drops that step, its invalid ids, padding and losses included.</summary>
    [Theory]
    [MemberData(nameof(ResetEngines))]
    public void ResetClearsEveryLayerAndTheWindow(string engine, int stepsBefore)
    {
        using var model = Create(engine, Options);
        using var fresh = Create(engine, Options);
        foreach (var step in ModelSteps.Random(Options.Layers, Options.Experts, 2, stepsBefore, seed: 3))
        {
            Record(model, step);
        }

        model.Reset();
        Assert.Equal(ModelSteps.Fingerprint(fresh), ModelSteps.Fingerprint(model));
        var again = ModelSteps.Random(Options.Layers, Options.Experts, 2, 7, seed: 4);
        foreach (var step in again)
        {
            Record(model, step);
        }

        AssertLayersEqual(model, ModelSteps.SingleLayers(Options, again), "after a reset");
        Assert.Equal(ModelSteps.WindowLoad(Options, again), model.WindowLoad());
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void ALayerIsReadOnly(string engine)
    {
        using var model = Create(engine, Options);
        var layer = model.Layer(1);
        var error = Assert.Throws<InvalidOperationException>(() => layer.RecordRouting([1, 2], 1, 2));
        Assert.Contains("RecordStep", error.Message);
        Assert.Throws<InvalidOperationException>(layer.Reset);
        layer.Dispose();
        Assert.Equal(0UL, model.Layer(1).TotalRoutings);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void SnapshotRecordsOnAsTheModelWould(string engine)
    {
        using var model = Create(engine, Options);
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, 2, 12, seed: 5);
        foreach (var step in steps.Take(7))
        {
            Record(model, step);
        }

        using var copy = model.Snapshot();
        Assert.Equal("managed", copy.Backend);
        foreach (var step in steps.Skip(7))
        {
            Record(copy, step);
        }

        AssertLayersEqual(copy, ModelSteps.SingleLayers(Options, steps), "a snapshot recorded on");
        Assert.Equal(ModelSteps.WindowLoad(Options, steps), copy.WindowLoad());
    }

    /// <summary>
    /// The copy reports read (the CLI's model report): every layer, the window's load, the summaries and the
    /// JSON equal the model's on every engine, a window that wrapped included; it keeps no ring, so it
    /// refuses to record on and to sum fewer steps than the window holds, as a model read from JSON.
    /// </summary>
    [Theory]
    [MemberData(nameof(WindowEngines))]
    public void AReadOnlyCopyReadsAsTheModel(string engine, int window)
    {
        // A window of 1,000 steps or more: the managed engine's layers read their variances from its ring's rows.
        using var model = Create(engine, Options with { Window = window });
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, 2, 9, seed: 13);
        foreach (var step in steps)
        {
            Record(model, step);
        }

        using var copy = model.ReadOnlyCopy();
        Assert.Equal("managed", copy.Backend);
        AssertLayersEqual(copy, ModelSteps.SingleLayers(Options with { Window = window }, steps), "in a read-only copy");
        Assert.Equal(model.WindowLoad(), copy.WindowLoad());
        int[] ranks = [0, 0, 1, 1, 2, 2, 3, 1, 0, 1, 2, 3, 3, 2, 1, 0];
        Assert.Equal(JsonSerializer.Serialize(model.Summary()), JsonSerializer.Serialize(copy.Summary()));
        Assert.Equal(JsonSerializer.Serialize(model.Summary(ranks)), JsonSerializer.Serialize(copy.Summary(ranks)));
        Assert.Equal(JsonSerializer.Serialize(model), JsonSerializer.Serialize(copy));

        Assert.Throws<InvalidOperationException>(() => Record(copy, steps[0]));
        Assert.Throws<InvalidOperationException>(() => copy.WindowLoad(recentSteps: 2));
        AssertLayersEqual(copy, ModelSteps.SingleLayers(Options with { Window = window }, steps), "after the refused calls");
    }

    public static TheoryData<string, int> WindowEngines => new()
    {
        { "managed", 5 }, { "managed", 1_000 }, { "cpu", 5 }, { "cpu", 1_000 }, { "cuda", 1_000 }, { "opencl", 1_000 },
    };

    /// <summary>
    /// A snapshot and a merge of a few steps of a long window copy those steps, not the window's whole ring
    /// (10 steps of 58 × 256 in a window of 20,000 took 9.5 s and 2.3 GB): here 4 steps of a 100,000-step window
    /// allocate a small part of its 150 MB, and each records on as the model does, its whole ring taken then.
    /// </summary>
    [Fact]
    public void SnapshotsAndMergesOfAFewStepsCopyThoseStepsAlone()
    {
        var options = new ModelRoutingStatsOptions { Layers = 4, Experts = 64, Window = 100_000 };
        var steps = ModelSteps.Random(options.Layers, options.Experts, 2, 5, seed: 41);
        using var model = new ModelRoutingStats(options);
        foreach (var step in steps.Take(4))
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        using var snapshot = model.Snapshot();
        using var merged = ModelRoutingStats.Merge([model]);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated < 8 << 20, $"{allocated:N0} bytes for a snapshot and a merge of 4 steps");
        foreach (var copy in new[] { model, snapshot, merged })
        {
            copy.RecordStep(steps[4].Ids, steps[4].Valid, steps[4].TopK, steps[4].Stride);
        }

        Assert.Equal(ModelSteps.Fingerprint(model), ModelSteps.Fingerprint(snapshot));
        Assert.Equal(model.WindowLoad(), merged.WindowLoad());
        Assert.Equal(model.WindowLoad(recentSteps: 2), snapshot.WindowLoad(recentSteps: 2));
        Assert.Equal(model.WindowLoad(recentSteps: 2), merged.WindowLoad(recentSteps: 2));
    }

    private static readonly ModelRoutingStatsOptions BadInputOptions = new() { Layers = 3, Experts = 8, Window = 4 };

    public static TheoryData<string> BadInputEngines => ["managed", "cpu"];

    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ABadStepLeavesTheStatisticsAsTheyWere(string engine)
    {
        using var model = ModelRoutingStatsTests.Create(engine, BadInputOptions);
        var good = new int[BadInputOptions.Layers * 4 * 2];
        model.RecordStep(good, 4, 2);
        var before = ModelSteps.Fingerprint(model);

        AssertRefused<ArgumentException>(() => model.RecordStep(new int[23], 4, 2), "topKExpertIds", "24");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, layerStride: 7), "layerStride", "at least tokens * topK = 8");
        AssertRefused<ArgumentException>(() => model.RecordStep(new int[2 * 9 + 7], 4, 2, layerStride: 9), "topKExpertIds", "26");
        AssertRefused<ArgumentOutOfRangeException>(() => model.RecordStep(good, 4, 2, layerStride: -1), "layerStride", "-1");
        AssertRefused<ArgumentOutOfRangeException>(() => model.RecordStep(good, 4, 0), "topK", "at least 1");
        AssertRefused<ArgumentOutOfRangeException>(() => model.RecordStep(good, -1, 2), "tokens", "negative");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, 0, new float[2]), "loadBalanceLosses", "one per layer (3)");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, 0, [], [0f, float.NaN, 0f]), "routerZLosses", "routerZLosses[1] is NaN");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, 0, [0f, float.PositiveInfinity, 0f]), "loadBalanceLosses", "loadBalanceLosses[1] is Infinity");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, 0, [], [float.NegativeInfinity, 0f, 0f]), "routerZLosses", "routerZLosses[0] is -Infinity");
        // The last layer's loss is checked as the others are.
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, 0, [0f, 0f, float.NaN]), "loadBalanceLosses", "loadBalanceLosses[2] is NaN");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, 0, [], [0f, 0f, float.PositiveInfinity]), "routerZLosses", "routerZLosses[2] is Infinity");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 1 << 20, 1 << 12), "tokens", "2^31 - 1");

        // Exactly 2^31 - 1 ids a layer is allowed: refused only for want of ids.
        AssertRefused<ArgumentException>(() => model.RecordStep(good, int.MaxValue, 1), "topKExpertIds", "topKExpertIds holds 24 values; 3 layers of tokens * topK = 2147483647 * 1");
        AssertRefused<ArgumentException>(() => model.RecordStep([5], 4, 2), "topKExpertIds", "topKExpertIds holds 1 value; 3 layers of");
        AssertRefused<ArgumentOutOfRangeException>(() => model.Layer(3), "layer", "0 to 2");
        AssertRefused<ArgumentOutOfRangeException>(() => model.Layer(-1), "layer", "0 to 2");
        AssertRefused<ArgumentException>(() => model.Summary(new int[7]), "expertRanks", "one per expert (8)");
        AssertRefused<ArgumentException>(() => model.Summary([0, 1, 2, 3, -1, 0, 1, 2]), "expertRanks", "expertRanks[4] is -1");
        AssertRefused<ArgumentException>(() => model.Summary([0, 1, 2, 3, 8, 0, 1, 2]), "expertRanks", "expertRanks[4] is 8");

        // A rank of no expert would count as an idle rank: ranks numbered from 1, or a gap.
        AssertRefused<ArgumentException>(() => model.Summary([1, 1, 2, 2, 3, 3, 4, 4]), "expertRanks", "expertRanks gives rank 0 no expert while rank 4 holds one; ranks are numbered from 0 with none left empty (numbered from 1? subtract 1).");
        AssertRefused<ArgumentException>(() => model.Summary([0, 0, 0, 0, 3, 3, 3, 3]), "expertRanks", "expertRanks gives rank 1 no expert while rank 3 holds one; ranks are numbered from 0 with none left empty.");

        // A list whose Count disagrees with what it holds: judged by what it holds (the device engine read past its buffer).
        AssertRefused<ArgumentException>(() => model.Summary(new MiscountedList(8, new int[9])), "expertRanks", "holds 9 ranks");
        AssertRefused<ArgumentException>(() => model.Summary(new MiscountedList(8, new int[7])), "expertRanks", "holds 7 ranks");
        Assert.Equal(before, ModelSteps.Fingerprint(model));
    }

    /// <summary>
    /// A model of one layer never steps to a second layer, so any stride takes its ids (a count of
    /// layers × stride would refuse one near 2^63 as needing 2^63 - 1 ids); with more layers, the ids the stride needs are named exactly.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void TheIdsAStrideNeedsAreCountedToTheLastLayer(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 1, Experts = 4, Window = 2 };
        using var model = Create(engine, options);
        using var packed = new ModelRoutingStats(options);
        model.RecordStep([0, 1, 3, 3], 2, 2, layerStride: long.MaxValue);
        packed.RecordStep([0, 1, 3, 3], 2, 2);
        Assert.Equal(ModelSteps.Fingerprint(packed), ModelSteps.Fingerprint(model));
        AssertRefused<ArgumentException>(() => model.RecordStep([0, 1, 3], 2, 2), "topKExpertIds", "topKExpertIds holds 3 values; 1 layer of tokens * topK = 2 * 2");

        using var two = Create(engine, options with { Layers = 2 });
        AssertRefused<ArgumentException>(() => two.RecordStep(new int[8], 2, 2, layerStride: 1L << 62), "topKExpertIds", FormattableString.Invariant($"need {(1L << 62) + 4:N0}."));

        // A stride whose layers pass what a long counts is named, not called a need of 2^63 − 1 ids.
        using var three = Create(engine, options with { Layers = 3 });
        AssertRefused<ArgumentException>(() => three.RecordStep(new int[12], 2, 2, layerStride: long.MaxValue), "layerStride", $"layerStride is {long.MaxValue}: 3 layers of tokens * topK = 2 * 2 at a layer stride of {long.MaxValue} pass the range of long");
        AssertRefused<ArgumentException>(() => three.RecordStep([], 2, 2), "topKExpertIds", "topKExpertIds holds 0 values (an empty span or view, or a view of a disposed buffer)");
    }

    /// <summary>A list that says it holds <paramref name="count"/> values and enumerates <paramref name="values"/>.</summary>
    private sealed class MiscountedList(int count, int[] values) : IReadOnlyList<int>
    {
        public int Count => count;

        public int this[int index] => values[index];

        public IEnumerator<int> GetEnumerator() => ((IEnumerable<int>)values).GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>
    /// Views of the wrong length on the model's own accelerator (the test above needs a second one): a count of valid rows
    /// of more than one int, loss views of more floats than layers; each refused naming its argument, the step not recorded.
    /// </summary>
    [Fact]
    public void ADeviceStepRefusesViewsOfTheWrongLength()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var model = ModelRoutingStats.OnDevice(accelerator, BadInputOptions);
        using var ids = accelerator.Allocate1D<int>(BadInputOptions.Layers * 8);
        using var twoInts = accelerator.Allocate1D<int>(2);
        using var longLosses = accelerator.Allocate1D<float>(BadInputOptions.Layers + 1);
        var before = ModelSteps.Fingerprint(model);

        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View, 4, 2, 0, twoInts.View), "validTokens", "validTokens holds 2 values; it must hold one int, or be default.");
        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View, 4, 2, 0, default, longLosses.View), "loadBalanceLosses", "loadBalanceLosses holds 4 values; it must hold 3 floats (one per layer), or be default.");
        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View, 4, 2, 0, default, default, longLosses.View), "routerZLosses", "routerZLosses holds 4 values; it must hold 3 floats (one per layer), or be default.");
        Assert.Equal(before, ModelSteps.Fingerprint(model));
    }

    [Fact]
    public void ADeviceStepRefusesViewsItCannotRead()
    {
        var accelerator = TestAccelerators.Require("cpu");
        var other = TestAccelerators.Require(TestAccelerators.CpuWithFourMultiprocessors);
        using var model = ModelRoutingStats.OnDevice(accelerator, BadInputOptions);
        using var ids = accelerator.Allocate1D<int>(BadInputOptions.Layers * 8);
        using var foreign = other.Allocate1D<int>(BadInputOptions.Layers * 8);
        using var shortLosses = accelerator.Allocate1D<float>(2);
        using var longLosses = accelerator.Allocate1D<float>(4);
        using var foreignValid = other.Allocate1D<int>(1);
        using var foreignLosses = other.Allocate1D<float>(BadInputOptions.Layers);
        var before = ModelSteps.Fingerprint(model);

        AssertRefused<ArgumentException>(() => model.RecordStep(foreign.View, 4, 2), "topKExpertIds", $"topKExpertIds lives on another '{accelerator.Name}' accelerator than this model's");
        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View, 4, 2, 0, foreignValid.View), "validTokens", $"validTokens lives on another '{accelerator.Name}' accelerator than this model's");
        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View, 4, 2, 0, default, foreignLosses.View), "loadBalanceLosses", $"loadBalanceLosses lives on another '{accelerator.Name}' accelerator than this model's");
        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View, 4, 2, 0, default, shortLosses.View), "loadBalanceLosses", "3 floats");
        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View, 4, 2, 0, default, default, longLosses.View), "routerZLosses", "routerZLosses holds 4 values; it must hold 3 floats (one per layer)");
        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View.SubView(0, 20), 4, 2), "topKExpertIds", "need 24");
        Assert.Equal(before, ModelSteps.Fingerprint(model));

        using var oneLayer = ModelRoutingStats.OnDevice(accelerator, BadInputOptions with { Layers = 1 });
        AssertRefused<ArgumentException>(() => oneLayer.RecordStep(ids.View, 4, 2, 0, default, shortLosses.View), "loadBalanceLosses", "loadBalanceLosses holds 2 values; it must hold 1 float (one per layer)");
    }

    [Theory]
    [InlineData(0, 8, 1000, "Layers", "Layers is 0; give 1 to 1,024.")]
    [InlineData(1025, 8, 1000, "Layers", "Layers is 1025; give 1 to 1,024.")]
    [InlineData(2, 0, 1000, "Experts", "Experts is 0; give 1 to 4,096.")]
    [InlineData(2, 4097, 1000, "Experts", "Experts is 4097; give 1 to 4,096.")]
    [InlineData(2, 8, 0, "Window", "Window is 0; give at least 1 step.")]
    [InlineData(1024, 4096, 1000, "Window", "Window is 1000; Window × Layers × Experts is 4,194,304,000")]
    public void OptionsOutOfRangeAreRefusedByName(int layers, int experts, int window, string name, string refusal)
    {
        var options = new ModelRoutingStatsOptions { Layers = layers, Experts = experts, Window = window };
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStats(options));
        Assert.Equal(name, error.ParamName);
        Assert.StartsWith(refusal, error.Message);
        var onDevice = Assert.Throws<ArgumentOutOfRangeException>(() => ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), options));
        Assert.Equal(error.Message, onDevice.Message);
    }

    /// <summary>A null argument is refused naming it, on every way to make a model (not a NullReferenceException from inside).</summary>
    [Fact]
    public void NullArgumentsAreRefusedByName()
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 4 };
        Assert.Equal("options", Assert.Throws<ArgumentNullException>(() => new ModelRoutingStats((ModelRoutingStatsOptions)null!)).ParamName);
        Assert.Equal("options", Assert.Throws<ArgumentNullException>(() => ModelRoutingStats.Create((ModelRoutingStatsOptions)null!)).ParamName);
        Assert.Equal("accelerator", Assert.Throws<ArgumentNullException>(() => ModelRoutingStats.OnDevice(null!, options)).ParamName);
        Assert.Equal("options", Assert.Throws<ArgumentNullException>(() => ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), (ModelRoutingStatsOptions)null!)).ParamName);

        // A null placement is refused, not read as no placement (the balance over experts).
        using var model = new ModelRoutingStats(options);
        Assert.Equal("expertRanks", Assert.Throws<ArgumentNullException>(() => model.Summary(null!)).ParamName);
        Assert.Equal("expertRanks", Assert.Throws<ArgumentNullException>(() => model.Summary(1, null!)).ParamName);
    }

    [Fact]
    public void LayerOptionsAreValidatedAsASingleLayer()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStats(BadInputOptions with { ExpertCapacity = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStats(BadInputOptions with { UtilizationDecay = 1f }));
    }

    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void AStepOfNoTokensNeedsNoIds(string engine)
    {
        using var model = ModelRoutingStatsTests.Create(engine, BadInputOptions);
        model.RecordStep(default(ArrayView<int>), 0, 2);
        model.RecordStep(ReadOnlySpan<int>.Empty, 0, 2);

        // Strides too, as an empty slice of a preallocated [tokens, layers, k] or padded [layers, tokens, k] buffer.
        model.RecordStep(ReadOnlySpan<int>.Empty, tokens: 0, topK: 2, layerStride: 2, tokenStride: 6);
        model.RecordStep(default(ArrayView<int>), tokens: 0, topK: 2, layerStride: 10);
        model.RecordStep(ReadOnlySpan<int>.Empty, tokens: 0, topK: 2, layerStride: 10);
        model.RecordStep(ReadOnlySpan<int>.Empty, tokens: 0, topK: 2, layerStride: 1L << 40);
        Assert.Equal(6UL, model.Summary().Steps);
        Assert.All(Enumerable.Range(0, BadInputOptions.Layers), l => Assert.Equal(6UL, model.Layer(l).TotalRoutings));

        // Left out where empty steps are, on every engine alike.
        using var skipping = ModelRoutingStatsTests.Create(engine, BadInputOptions with { SkipEmptySteps = true });
        skipping.RecordStep(ReadOnlySpan<int>.Empty, tokens: 0, topK: 2, layerStride: 10);
        skipping.RecordStep(default(ArrayView<int>), tokens: 0, topK: 2, layerStride: 10);
        Assert.Equal(0UL, skipping.Summary().Steps);
        Assert.Equal(6UL, model.Layer(2).TotalRoutings);
        Assert.Equal(0UL, model.Layer(2).TotalTokens);
    }

    /// <summary>Ties go as the seed's max_by and min_by: the last hottest and the first coldest, as a layer's most and least utilized expert.</summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void TiesPickTheExpertsTheLayersPick(string engine)
    {
        using var model = Create(engine, BadInputOptions);
        // Every layer: experts 1, 4 and 6 take two slots each, 0, 2 and 7 none, 3 and 5 one.
        int[] layer = [1, 4, 6, 1, 4, 6, 3, 5];
        model.RecordStep([.. layer, .. layer, .. layer], 4, 2);

        var summary = model.Summary();
        for (var l = 0; l < BadInputOptions.Layers; l++)
        {
            using var single = model.Layer(l);
            Assert.Equal((6, 0), (summary.Window.Layers[l].HottestExpert, summary.Window.Layers[l].ColdestExpert));
            Assert.Equal(single.MostUtilizedExpert()!.Value.Index, summary.SinceStart.Layers[l].HottestExpert);
            Assert.Equal(single.LeastUtilizedExpert()!.Value.Index, summary.SinceStart.Layers[l].ColdestExpert);
        }
    }

    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ADisposedModelSaysSoThroughItsLayersToo(string engine)
    {
        var model = Create(engine, BadInputOptions);
        model.RecordStep(new int[24], 4, 2);
        using var layer = model.Layer(1);
        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => model.RecordStep(new int[24], 4, 2));
        Assert.Throws<ObjectDisposedException>(() => model.Layer(0));
        Assert.Throws<ObjectDisposedException>(() => model.Summary());

        // A layer's handle outlives the model's own check: it names the model, on every engine.
        AssertModelDisposed(() => layer.ExpertTokenCounts);
        AssertModelDisposed(() => layer.TotalRoutings);
        AssertModelDisposed(() => layer.RoutingLatencyStats);
        AssertModelDisposed(() => layer.RecordRoutingLatency(TimeSpan.FromMilliseconds(1)));
        AssertModelDisposed(layer.Reset);
    }

    private static void AssertModelDisposed(Action call) =>
        Assert.Equal("This ModelRoutingStats was disposed.", Assert.Throws<ObjectDisposedException>(call).Message);

    private static void AssertModelDisposed(Func<object> read) => AssertModelDisposed(() => { _ = read(); });

    /// <summary>
    /// A layer takes no latency (the model keeps none): recording one is refused, not kept by the handle and lost with
    /// it, and one recorded through its <c>RoutingLatencyStats</c> (an empty copy) is not kept either.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ALayerRefusesALatency(string engine)
    {
        using var model = Create(engine, BadInputOptions);
        using var layer = model.Layer(2);

        var error = Assert.Throws<InvalidOperationException>(() => layer.RecordRoutingLatency(TimeSpan.FromMilliseconds(1)));
        layer.RoutingLatencyStats.RecordLatency(TimeSpan.FromMilliseconds(5));

        Assert.StartsWith("Layer 2 of a model is read-only", error.Message);
        Assert.Equal(0UL, layer.RoutingLatencyStats.TotalMeasurements);
        Assert.DoesNotContain("\"total_measurements\":1", JsonSerializer.Serialize(layer));
    }

    /// <summary>Losses in device arrays are not read by the host first: a NaN or infinite one counts as 0 on every engine, and the averages stay finite.</summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ANonFiniteLossInADeviceArrayCountsAsZero(string engine)
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var model = Create(engine, BadInputOptions);
        using var expected = Create(engine, BadInputOptions);
        var ids = Enumerable.Range(0, BadInputOptions.Layers * 8).Select(i => i % 8).ToArray();
        using var deviceIds = accelerator.Allocate1D(ids);
        using var losses = accelerator.Allocate1D([float.NaN, float.PositiveInfinity, 2f]);
        using var zLosses = accelerator.Allocate1D([float.NegativeInfinity, 1f, float.NaN]);
        using var finite = accelerator.Allocate1D([1f, 1f, 1f]);

        model.RecordStep(deviceIds.View, 4, 2, 0, default, losses.View, zLosses.View);
        model.RecordStep(deviceIds.View, 4, 2, 0, default, finite.View, finite.View);
        expected.RecordStep(ids, 4, 2, 0, [0f, 0f, 2f], [0f, 1f, 0f]);
        expected.RecordStep(ids, 4, 2, 0, [1f, 1f, 1f], [1f, 1f, 1f]);

        Assert.Equal(ModelSteps.Fingerprint(expected), ModelSteps.Fingerprint(model));
        Assert.Equal(0.5f, model.Layer(0).AverageLoadBalanceLoss);
        Assert.Equal(0.5f, model.Layer(2).AverageRouterZLoss);
    }

    /// <summary>
    /// A device count of valid tokens outside <c>[0, tokens]</c> is clamped on every engine: a negative count records
    /// a step of no valid token, one past the tokens the whole step, as host ids of that many valid rows record.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ADeviceCountOfValidTokensIsClampedToTheTokens(string engine)
    {
        const int tokens = 4, topK = 2;
        var accelerator = TestAccelerators.Require("cpu");
        using var model = Create(engine, BadInputOptions);
        using var expected = new ModelRoutingStats(BadInputOptions);
        var ids = Enumerable.Range(0, BadInputOptions.Layers * tokens * topK).Select(i => (i * 3 + i / 8) % BadInputOptions.Experts).ToArray();
        using var deviceIds = accelerator.Allocate1D(ids);
        foreach (var count in new[] { -3, tokens + 5, int.MinValue, 2, int.MaxValue, -1 })
        {
            using var deviceCount = accelerator.Allocate1D([count]);
            model.RecordStep(deviceIds.View, tokens, topK, 0, deviceCount.View);
            accelerator.Synchronize();
            expected.RecordStep(ids, Math.Clamp(count, 0, tokens), topK, tokens * topK);
        }

        Assert.Equal(ModelSteps.Fingerprint(expected), ModelSteps.Fingerprint(model));
        Assert.Equal(6UL, model.Summary().Steps);
    }

    /// <summary>
    /// A model is thread-safe: a layer's read on one thread sees whole steps and resets made on
    /// another (live arrays read outside the lock, or a summary's utilization and totals read apart,
    /// would mix two states).
    /// </summary>
    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void ALayerReadOnAnotherThreadSeesWholeSteps(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 512, Window = 2, ExpertCapacity = 1 };
        using var model = Create(engine, options);
        using var layer = model.Layer(1);
        // Each step routes one token to every expert, with a loss of 1: a whole state has equal counts, and utilization exactly when it has a loss.
        var ids = Enumerable.Range(0, options.Layers * options.Experts).Select(i => i % options.Experts).ToArray();
        var losses = new float[] { 1f, 1f };
        ReadsDuringWrites.Run(
            writes: 400,
            write: () =>
            {
                model.Reset();
                model.RecordStep(ids, options.Experts, 1, 0, losses);
            },
            read: reads =>
            {
                var counts = layer.ExpertTokenCounts.ToArray();
                Assert.True(counts.Distinct().Count() <= 1, $"read {reads}: token counts from two states");
                var utilization = layer.ExpertUtilization.ToArray();
                Assert.True(utilization.Distinct().Count() <= 1, $"read {reads}: utilization from two states");
                var summary = layer.UtilizationSummary();
                Assert.True(summary.ContainsKey("mean_utilization") == (summary["average_load_balance_loss"] == 1f), $"read {reads}: a summary from two states");
                var most = layer.MostUtilizedExpert();
                Assert.True(most is null || most.Value.Utilization > 0, $"read {reads}: the expert count of one state with the query of another");
            });
    }

    private static readonly ModelRoutingStatsOptions MergeOptions = new() { Layers = 3, Experts = 8, Window = 3, UtilizationDecay = 0.5f };

    [Fact]
    public void MergedLayersEqualMergedSingleLayersAndTheWindowsAlignFromTheNewest()
    {
        var a = ModelSteps.Random(MergeOptions.Layers, MergeOptions.Experts, 2, 4, seed: 31);
        var b = ModelSteps.Random(MergeOptions.Layers, MergeOptions.Experts, 2, 4, seed: 32);
        var options = MergeOptions;
        using var first = new ModelRoutingStats(options);
        using var second = new ModelRoutingStats(options);
        foreach (var (model, steps) in new[] { (first, a), (second, b) })
        {
            foreach (var step in steps)
            {
                Record(model, step);
            }
        }

        using var merged = ModelRoutingStats.Merge([first, second]);
        var singles = ModelSteps.SingleLayers(options, a).Zip(ModelSteps.SingleLayers(options, b), (x, y) => RoutingStats.Merge([x, y])).ToArray();
        for (var l = 0; l < options.Layers; l++)
        {
            Assert.Equal(JsonSerializer.Serialize(singles[l]), JsonSerializer.Serialize(merged.Layer(l)));
        }

        // RoutingStats.Merge does not merge the decayed utilization, so neither the layers nor the model keep a decay.
        Assert.Null(singles[0].Options.UtilizationDecay);
        Assert.Null(merged.Options.UtilizationDecay);
        Assert.Empty(merged.Layer(0).DecayedExpertUtilization);

        var window = ModelSteps.WindowLoad(MergeOptions, a).Zip(ModelSteps.WindowLoad(MergeOptions, b), (x, y) => x + y).ToArray();
        Assert.Equal(window, merged.WindowLoad());

        // The next step evicts the oldest step of both ranks, not another.
        var next = ModelSteps.Random(MergeOptions.Layers, MergeOptions.Experts, 2, 1, seed: 33);
        merged.RecordStep(next[0].Ids, next[0].Valid, next[0].TopK, next[0].Stride);
        var expected = ModelSteps.WindowLoad(MergeOptions, [.. a.Skip(2), next[0]])
            .Zip(ModelSteps.WindowLoad(MergeOptions, [.. b.Skip(2)]), (x, y) => x + y).ToArray();
        Assert.Equal(expected, merged.WindowLoad());
    }

    /// <summary>
    /// A step that would take a layer's count past 2^63 − 1 is refused before any layer records, naming the layer and
    /// the count: refused at layer 1, it had recorded layer 0 and left the model's steps behind its layers' batches
    /// (a state its reader refuses).
    /// </summary>
    [Fact]
    public void AStepThatWouldTakeALayersCountPastTheLargestIsRefusedWithNoLayerRecorded()
    {
        const ulong most = long.MaxValue;
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 2, Window = 4 };
        using var live = new ModelRoutingStats(options);
        live.RecordStep([0, 1, 1, 1], tokens: 2, topK: 1);
        var state = live.ExportState();
        state.Layers[1].ExpertTokenCounts[0] = most - 2;
        state.Layers[1].RoutedSlots = most - 2;
        using var near = new ModelRoutingStats(new ManagedModelEngine(options, state));
        var before = JsonSerializer.Serialize(near);

        var error = Assert.Throws<InvalidOperationException>(() => near.RecordStep([0, 1, 0, 0, 0, 0], tokens: 3, topK: 1));

        Assert.Equal(FormattableString.Invariant($"This step would take layers[1].expert_token_counts[0] past 9,223,372,036,854,775,807 ({most - 2} + 3), the most a snapshot holds; the model is unchanged: record into a new model."), error.Message);
        Assert.Equal(before, JsonSerializer.Serialize(near));
        near.RecordStep([0, 1, 1, 0], tokens: 2, topK: 1);
        Assert.Equal((most - 1, most), (near.Layer(1).ExpertTokenCounts[0], near.Layer(1).RoutedSlots));
        Assert.Equal(2UL, near.Layer(0).TotalRoutings);
    }

    /// <summary>
    /// A merge refuses a count it cannot hold, naming it: a layer's count past 2^63 − 1 as a snapshot file does, the
    /// steps past it, one step of an expert in the 32-bit window ring by its layer, expert and step.
    /// </summary>
    [Fact]
    public void AMergePastWhatItHoldsIsRefusedNamingTheCount()
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 2, Window = 4 };
        using var live = new ModelRoutingStats(options);
        live.RecordStep([0, 1, 1, 1], tokens: 2, topK: 1);
        ModelRoutingStats Edited(Action<ModelState> edit)
        {
            var state = live.ExportState();
            edit(state);
            return new ModelRoutingStats(new ManagedModelEngine(options, state));
        }

        foreach (var (edit, message) in new (Action<ModelState>, string)[]
        {
            (state => state.Layers[1].TotalTokens = long.MaxValue - 1, $"The merged layers[1].total_tokens exceeds 9,223,372,036,854,775,807 ({long.MaxValue - 1} + {long.MaxValue - 1}), the most a snapshot holds"),
            (state => state.Steps = long.MaxValue - 1, $"The merged steps exceeds 9,223,372,036,854,775,807 ({long.MaxValue - 1} + {long.MaxValue - 1})"),
            (state => state.WindowRing![3] = uint.MaxValue - 1, $"The merged slots of expert 1 in layer 1, 0 steps before the newest, exceed 4,294,967,295 ({uint.MaxValue - 1} + {uint.MaxValue - 1}), the most one step of the window holds"),
        })
        {
            using var part = Edited(edit);
            using var other = Edited(edit);
            var error = Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge([part, other]));
            Assert.Equal("parts", error.ParamName);
            Assert.StartsWith(message, error.Message);
        }
    }

    /// <summary>
    /// Parts of different lengths (four steps beside one, window 3) merge into the longer window, the
    /// newest steps aligned; each merged step then leaves the window in turn, oldest first, as the
    /// merged model records on: the load is checked after every step until none of the merged steps is left.
    /// </summary>
    [Fact]
    public void MergedWindowsOfDifferentLengthsSlideOutStepByStep()
    {
        var a = ModelSteps.Random(MergeOptions.Layers, MergeOptions.Experts, 2, 4, seed: 34);
        var b = ModelSteps.Random(MergeOptions.Layers, MergeOptions.Experts, 2, 1, seed: 35);
        using var first = new ModelRoutingStats(MergeOptions);
        using var second = new ModelRoutingStats(MergeOptions);
        foreach (var (model, steps) in new[] { (first, a), (second, b) })
        {
            foreach (var step in steps)
            {
                model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
            }
        }

        using var merged = ModelRoutingStats.Merge([first, second]);
        Assert.Equal((5UL, 3), (merged.Summary().Steps, merged.Summary().WindowSteps));

        var next = ModelSteps.Random(MergeOptions.Layers, MergeOptions.Experts, 2, 3, seed: 36);
        for (var k = 0; k <= next.Count; k++)
        {
            if (k > 0)
            {
                merged.RecordStep(next[k - 1].Ids, next[k - 1].Valid, next[k - 1].TopK, next[k - 1].Stride);
            }

            // a's last three steps, the newest with b's only step, less the k oldest, plus the k new steps.
            var expected = ModelSteps.WindowLoad(MergeOptions, [.. a.Skip(1 + k), .. next.Take(k)])
                .Zip(ModelSteps.WindowLoad(MergeOptions, k < 3 ? b : []), (x, y) => x + y).ToArray();
            Assert.True(expected.SequenceEqual(merged.WindowLoad()), $"after {k} new steps");
        }
    }

    /// <summary>
    /// A merge's ring sums its parts' rows, so an expert's count in one step may pass 2^31 (128 parts of a step
    /// of 2^24 + 1 slots to expert 0, 2^31 + 128 merged): the merged model's next whole step evicts it exactly, the window then
    /// holding that step alone, in the vector loop and its scalar tail (9 experts).
    /// </summary>
    [Fact]
    public void AMergedStepOfCountsPast2To31SlidesOutExactly()
    {
        var options = new ModelRoutingStatsOptions { Layers = 1, Experts = 9, Window = 1 };
        using var model = new ModelRoutingStats(options);
        const int tokens = (1 << 24) + 9;
        var big = new int[tokens];
        big.AsSpan(tokens - 8).Fill(8);
        model.RecordStep(big, tokens, topK: 1);
        var parts = Enumerable.Range(0, 128).Select(_ => model.Snapshot()).ToArray();
        using var merged = ModelRoutingStats.Merge(parts);
        Assert.Equal(128UL * (tokens - 8), merged.WindowLoad()[0]);

        var next = Enumerable.Range(0, 33).Select(i => i % options.Experts).ToArray();
        merged.RecordStep(next, next.Length, topK: 1);

        Assert.Equal([4UL, 4, 4, 4, 4, 4, 3, 3, 3], merged.WindowLoad());
        foreach (var part in parts)
        {
            part.Dispose();
        }
    }

    /// <summary>
    /// A part read from JSON keeps its window's load but not its steps: merged beside a live part, the
    /// loads add up and the merge, like that part, is read but not recorded into.
    /// </summary>
    [Fact]
    public void APartReadFromJsonMergesItsWindowLoadWithoutItsSteps()
    {
        var a = ModelSteps.Random(MergeOptions.Layers, MergeOptions.Experts, 2, 2, seed: 37);
        var b = ModelSteps.Random(MergeOptions.Layers, MergeOptions.Experts, 2, 2, seed: 38);
        using var first = new ModelRoutingStats(MergeOptions);
        using var second = new ModelRoutingStats(MergeOptions);
        foreach (var (model, steps) in new[] { (first, a), (second, b) })
        {
            foreach (var step in steps)
            {
                model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
            }
        }

        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(JsonSerializer.Serialize(first))!;
        using var merged = ModelRoutingStats.Merge([second, read]);

        var window = ModelSteps.WindowLoad(MergeOptions, a).Zip(ModelSteps.WindowLoad(MergeOptions, b), (x, y) => x + y).ToArray();
        Assert.Equal(window, merged.WindowLoad());
        Assert.Equal(2, merged.Summary().WindowSteps);
        Assert.Throws<InvalidOperationException>(() => merged.RecordStep(b[0].Ids, b[0].Valid, b[0].TopK, b[0].Stride));
    }

    [Fact]
    public void ModelsOfDifferentShapesDoNotMerge()
    {
        using var first = new ModelRoutingStats(MergeOptions);
        using var alike = new ModelRoutingStats(MergeOptions);
        using var second = new ModelRoutingStats(MergeOptions with { Experts = 16 });
        var error = Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge([first, alike, second]));
        Assert.Equal("parts", error.ParamName);
        Assert.StartsWith(
            $"Only models of the same shape merge: parts[0] is {MergeOptions.Layers} layers × {MergeOptions.Experts} experts, window {MergeOptions.Window}, capacity none, parts[2] is {MergeOptions.Layers} layers × 16 experts,",
            error.Message);
        var empty = Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge([]));
        Assert.Equal("parts", empty.ParamName);
        Assert.StartsWith("parts is empty; give at least one part to merge.", empty.Message);
        var missing = Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge([first, null!]));
        Assert.Equal("parts", missing.ParamName);
        Assert.StartsWith("parts[1] is null", missing.Message);
    }

    /// <summary>
    /// A merged model records on under one shape: parts that differ from parts[0] in the layers, the window, or the
    /// capacity are refused by name, as parts that differ in experts (or in skipping empty steps) are.
    /// </summary>
    [Theory]
    [InlineData("layers")]
    [InlineData("window")]
    [InlineData("capacity")]
    public void ModelsDifferingInAnyPartOfTheShapeDoNotMerge(string differing)
    {
        var options = differing switch
        {
            "layers" => MergeOptions with { Layers = MergeOptions.Layers + 1 },
            "window" => MergeOptions with { Window = MergeOptions.Window + 1 },
            _ => MergeOptions with { ExpertCapacity = 5 },
        };
        using var first = new ModelRoutingStats(MergeOptions);
        using var second = new ModelRoutingStats(options);
        foreach (var model in new[] { first, second })
        {
            var step = ModelSteps.Random(model.Options.Layers, model.Options.Experts, 2, 1, seed: 39)[0];
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
        }

        foreach (var parts in new[] { new[] { first, second }, [second, first] })
        {
            var error = Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge(parts));
            Assert.Equal("parts", error.ParamName);
            Assert.StartsWith(
                $"Only models of the same shape merge: parts[0] is {parts[0].Options.Layers} layers × {MergeOptions.Experts} experts, window {parts[0].Options.Window}, capacity {(parts[0].Options.ExpertCapacity is { } capacity ? FormattableString.Invariant($"{capacity}") : "none")}",
                error.Message);
            Assert.Contains($"parts[1] is {parts[1].Options.Layers} layers × {MergeOptions.Experts} experts, window {parts[1].Options.Window}", error.Message);
        }
    }

    /// <summary>
    /// A model read from JSON cannot record, so the window its file names costs no memory: a
    /// 2,000,000,000-step window is read with a few kilobytes (it allocated 16 GB), and answers every read.
    /// </summary>
    [Fact]
    public void AModelReadFromJsonAllocatesNoWindowRing()
    {
        using var source = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 1, Experts = 1, Window = 2 });
        source.RecordStep([0, 0], tokens: 2, topK: 1);
        var json = JsonSerializer.Serialize(source).Replace("\"window\":2,", "\"window\":2000000000,", StringComparison.Ordinal);
        Assert.Contains("\"window\":2000000000,", json);

        var before = GC.GetAllocatedBytesForCurrentThread();
        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(json)!;
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated < 10_000_000, $"{allocated:N0} bytes allocated to read a model that cannot record");
        Assert.Equal(2_000_000_000, read.Options.Window);
        Assert.Equal([2UL], read.WindowLoad());
        Assert.Throws<InvalidOperationException>(() => read.RecordStep([0], tokens: 1, topK: 1));
    }

    internal static void AssertLayersEqual(ModelRoutingStats model, RoutingStats[] expected, string when)
    {
        for (var l = 0; l < expected.Length; l++)
        {
            Assert.True(ModelSteps.Fingerprint(expected[l]) == ModelSteps.Fingerprint(model.Layer(l)), $"layer {l} {when}:\n{ModelSteps.Fingerprint(expected[l])}\n{ModelSteps.Fingerprint(model.Layer(l))}");
        }
    }

    /// <summary>The balance figures of each layer recomputed here, plainly, from the loads.</summary>
    private static void AssertBalance(ulong[] loads, int experts, int[]? ranks, BalanceSummary summary)
    {
        var layers = loads.Length / experts;
        var balancedness = new double[layers];
        double means = 0, maxima = 0;
        for (var l = 0; l < layers; l++)
        {
            var row = loads.Skip(l * experts).Take(experts).ToArray();
            if (ranks is not null)
            {
                var perRank = new ulong[ranks.Max() + 1];
                for (var e = 0; e < experts; e++)
                {
                    perRank[ranks[e]] += row[e];
                }

                row = perRank;
            }

            var total = row.Aggregate(0UL, (a, b) => a + b);
            var mean = total / (double)row.Length;
            var max = row.Max();
            var actual = summary.Layers[l];
            Assert.Equal(total, actual.Load);
            Assert.Equal(max, actual.MaxLoad);
            Assert.Equal(row.Min(), actual.MinLoad);
            Assert.Equal(System.Array.LastIndexOf(row, max), actual.HottestExpert);
            Assert.Equal(System.Array.IndexOf(row, row.Min()), actual.ColdestExpert);
            Assert.Equal(row.Count(load => load == 0), actual.DeadExperts);
            balancedness[l] = total == 0 ? 1 : mean / max;
            Assert.Equal(balancedness[l], actual.Balancedness, 15);
            Assert.Equal(total == 0 ? 1 : max / mean, actual.MaxMeanRatio, 12);
            var deviation = Math.Sqrt(row.Sum(load => (load - mean) * (load - mean)) / row.Length);
            Assert.Equal(total == 0 ? 0 : deviation / mean, actual.CoefficientOfVariation, 12);
            means += mean;
            maxima += max;
        }

        var sorted = balancedness.Order().ToArray();
        Assert.Equal(sorted[0], summary.MinBalancedness);
        Assert.Equal(layers % 2 == 1 ? sorted[layers / 2] : (sorted[layers / 2 - 1] + sorted[layers / 2]) / 2, summary.MedianBalancedness, 15);
        var rank = 0.1 * (layers - 1);
        var below = (int)Math.Floor(rank);
        Assert.Equal(sorted[below] + ((sorted[Math.Min(below + 1, layers - 1)] - sorted[below]) * (rank - below)), summary.P10Balancedness, 15);
        Assert.Equal(balancedness.Average(), summary.MeanBalancedness, 15);
        Assert.Equal(System.Array.IndexOf(balancedness, sorted[0]), summary.WorstLayer);
        Assert.Equal(sorted[^1], summary.MaxBalancedness, 15);
        Assert.Equal(System.Array.IndexOf(balancedness, sorted[^1]), summary.BestLayer);
        Assert.Equal(maxima == 0 ? 1 : means / maxima, summary.TokenWeightedBalancedness, 15);
    }

    /// <summary>Records <paramref name="step"/> from the host, its valid rows and losses included.</summary>
    private static void Record(ModelRoutingStats model, ModelSteps.Step step) =>
        model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);

    private static void AssertRefused<TException>(Action call, string parameter, string words)
        where TException : ArgumentException
    {
        var error = Assert.ThrowsAny<TException>(call);
        Assert.Equal(parameter, error.ParamName);
        // The first line: an ArgumentOutOfRangeException appends the actual value on a line of its own.
        Assert.Contains(words, error.Message.Split('\n')[0]);
    }

    /// <summary>Steps recorded from device views: the ids, a device count of valid rows and device losses.</summary>
    private sealed class DeviceIds(Accelerator accelerator) : IDisposable
    {
        private readonly List<MemoryBuffer> _buffers = [];

        public void Record(ModelRoutingStats model, ModelSteps.Step step)
        {
            var ids = Upload(step.Ids);
            var valid = Upload([step.Valid]);
            var losses = Upload(step.LoadBalanceLosses);
            ArrayView<float> zLosses = step.RouterZLosses.Length == 0 ? default : Upload(step.RouterZLosses);
            model.RecordStep(ids, step.Tokens, step.TopK, step.Stride, valid, losses, zLosses);
        }

        /// <summary>Records <paramref name="step"/> from <paramref name="ids"/>, its rows laid out at the strides.</summary>
        public void Record(ModelRoutingStats model, ModelSteps.Step step, int[] ids, long layerStride, long tokenStride)
        {
            ArrayView<float> zLosses = step.RouterZLosses.Length == 0 ? default : Upload(step.RouterZLosses);
            model.RecordStep(Upload(ids), step.Tokens, step.TopK, layerStride, Upload([step.Valid]), Upload(step.LoadBalanceLosses), zLosses, tokenStride);
        }

        private ArrayView<T> Upload<T>(T[] values)
            where T : unmanaged
        {
            var buffer = accelerator.Allocate1D(values);
            _buffers.Add(buffer);
            return buffer.View;
        }

        public void Dispose()
        {
            accelerator.Synchronize();
            foreach (var buffer in _buffers)
            {
                buffer.Dispose();
            }
        }
    }
}
