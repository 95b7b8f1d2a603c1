using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Model;

/// <summary>
/// A whole model against single-layer statistics fed each layer alone, on the managed engine and on
/// every accelerator: every layer to the bit, the window's load, the summary, and bad input.
/// </summary>
public sealed class ModelRoutingStatsTests
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
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
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

    [Theory]
    [MemberData(nameof(Engines))]
    public void ResetClearsEveryLayerAndTheWindow(string engine)
    {
        using var model = Create(engine, Options);
        using var fresh = Create(engine, Options);
        foreach (var step in ModelSteps.Random(Options.Layers, Options.Experts, 2, 8, seed: 3))
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
        }

        model.Reset();
        Assert.Equal(ModelSteps.Fingerprint(fresh), ModelSteps.Fingerprint(model));
        var again = ModelSteps.Random(Options.Layers, Options.Experts, 2, 7, seed: 4);
        foreach (var step in again)
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
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
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
        }

        using var copy = model.Snapshot();
        Assert.Equal("managed", copy.Backend);
        foreach (var step in steps.Skip(7))
        {
            copy.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
        }

        AssertLayersEqual(copy, ModelSteps.SingleLayers(Options, steps), "a snapshot recorded on");
        Assert.Equal(ModelSteps.WindowLoad(Options, steps), copy.WindowLoad());
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
            Assert.Equal(System.Array.IndexOf(row, max), actual.HottestExpert);
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
        Assert.Equal(balancedness.Average(), summary.MeanBalancedness, 15);
        Assert.Equal(System.Array.IndexOf(balancedness, sorted[0]), summary.WorstLayer);
        Assert.Equal(maxima == 0 ? 1 : means / maxima, summary.TokenWeightedBalancedness, 15);
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
