using System.Text.Json;
using System.Text.Json.Serialization;
using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// Reads of every kind, several between two steps and none between others: each read enqueues a
/// fold-only launch, which must change nothing when no step is pending (losses, the window's position
/// and ring, capacity, variance history), so the model equals the managed engine fed the same steps.
/// </summary>
public sealed partial class DeviceModelEngineTests
{
    private static readonly JsonSerializerOptions StateJson = new() { IncludeFields = true, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals };

    public static TheoryData<int, int, int, int, float> ReadShapes => new()
    {
        { 4, 32, 6, 5, 0.9f },
        { 1, 8, 1, 0, -1f },
        { 3, 16, 1, 2, 0.5f },
        { 1, 5, 3, 0, 0.8f },
    };

    [Theory]
    [MemberData(nameof(ReadShapes))]
    public void ReadsBetweenStepsChangeNothing(int layers, int experts, int window, int capacity, float decay)
    {
        var accelerator = TestAccelerators.Require("cpu");
        var options = new ModelRoutingStatsOptions
        {
            Layers = layers, Experts = experts, Window = window,
            ExpertCapacity = capacity > 0 ? capacity : null, UtilizationDecay = decay >= 0 ? decay : null,
        };
        const int rows = 20, topK = 2, stride = rows * topK + 4;
        var engine = new DeviceModelEngine(accelerator, options);
        using var model = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(options);
        using var ids = accelerator.Allocate1D<int>(layers * stride);
        using var valid = accelerator.Allocate1D<int>(1);
        using var losses = accelerator.Allocate1D<float>(layers);
        using var zLosses = accelerator.Allocate1D<float>(layers);
        var ranks = Enumerable.Range(0, experts).Select(e => e % 3).ToArray();
        var random = new Random(layers * 1000 + experts * 10 + window);
        var reads = ReadKinds(ranks);
        var next = 0;
        for (var step = 0; step < 30; step++)
        {
            if (step == 17)
            {
                model.Reset();
                managed.Reset();
                AssertSameState(managed, model, "after the reset");
            }

            var (host, count) = RandomStep(random, step, options, rows, topK, stride);
            var lossValues = Enumerable.Range(0, layers).Select(_ => (float)random.NextDouble()).ToArray();
            var zValues = Enumerable.Range(0, layers).Select(_ => (float)random.NextDouble() * 2).ToArray();
            // On the engine's stream: OpenCL orders no queue after another, so a write on the default stream overtook the step before it.
            ids.View.CopyFromCPU(engine.Stream, host);
            valid.View.CopyFromCPU(engine.Stream, [count]);
            losses.View.CopyFromCPU(engine.Stream, lossValues);
            zLosses.View.CopyFromCPU(engine.Stream, zValues);
            model.RecordStep(ids.View, rows, topK, stride, valid.View, losses.View, zLosses.View);
            managed.RecordStep(host, count, topK, stride, lossValues, zValues);

            // 0, 2, 3, 4 or 5 reads of different kinds, then the whole state.
            var readsNow = step % 5 == 4 ? 0 : 2 + step % 4;
            for (var r = 0; r < readsNow; r++, next++)
            {
                var (name, read) = reads[next % reads.Length];
                Assert.True(read(managed) == read(model), $"step {step}, read {r} ({name}) differs");
            }

            AssertSameState(managed, model, $"step {step}, after {readsNow} reads");
        }
    }

    public static TheoryData<int, int, int> ReplayShapes => new()
    {
        { 1, 8, 1 },
        { 3, 16, 1 },
        { 1, 6, 4 },
        { 2, 32, 3 },
    };

    /// <summary>
    /// Replays of one set of arguments, which the host never counts, across resets (a replay right
    /// after one, a reset between two replays with no read), with zero-token steps: every read and
    /// the whole state equal the managed engine's.
    /// </summary>
    [Theory]
    [MemberData(nameof(ReplayShapes))]
    public void ReplaysAcrossResetsEqualTheManagedEngine(int layers, int experts, int window)
    {
        var accelerator = TestAccelerators.Require("cpu");
        var options = new ModelRoutingStatsOptions { Layers = layers, Experts = experts, Window = window, ExpertCapacity = 3, UtilizationDecay = 0.7f };
        const int rows = 12, topK = 2, stride = rows * topK + 2;
        var engine = new DeviceModelEngine(accelerator, options);
        using var model = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(options);
        using var ids = accelerator.Allocate1D<int>(layers * stride);
        using var valid = accelerator.Allocate1D<int>(1);
        var captured = engine.StepArguments(rows, topK, stride, topK);
        var random = new Random(layers * 100 + experts + window);
        // The device arrays' steps are the host's count, which no replay advances (checked below).
        var reads = ReadKinds(Enumerable.Range(0, experts).Select(e => e % 2).ToArray()).Where(kind => kind.Name != "device arrays").ToArray();
        var recorded = 0;
        for (var step = 0; step < 24; step++)
        {
            if (step is 7 or 8 or 15)
            {
                // 7 and 8: a reset, a replay, a reset again, with no read between them.
                model.Reset();
                managed.Reset();
                recorded = 0;
            }

            var (host, count) = RandomStep(random, step, options, rows, topK, stride);
            // On the engine's stream: OpenCL orders no queue after another, so a write on the default stream overtook the step before it.
            ids.View.CopyFromCPU(engine.Stream, host);
            valid.View.CopyFromCPU(engine.Stream, [count]);
            engine.Replay<int>(ids.View, captured, valid.View);
            managed.RecordStep(host, count, topK, stride);
            recorded++;
            if (step is 7 or 13)
            {
                continue;
            }

            // The host's count: the device's at the last read (a step ago; two after step 13, which reads nothing; 0 at a reset) and no replay.
            Assert.Equal((ulong)recorded - (step is 14 ? 2UL : 1UL), model.DeviceArrays().Steps);
            var (name, read) = reads[step % reads.Length];
            Assert.True(read(managed) == read(model), $"step {step}: {name} differs");
            Assert.Equal((ulong)recorded, model.Summary().Steps);
            Assert.Equal((ulong)recorded, model.DeviceArrays().Steps);
            AssertSameState(managed, model, $"step {step}");
        }
    }

    /// <summary>The model's whole state (steps, window position and ring, every layer's fields) and every layer's reads, equal to the managed engine's.</summary>
    private static void AssertSameState(ModelRoutingStats managed, ModelRoutingStats model, string when)
    {
        Assert.True(JsonSerializer.Serialize(managed.ExportState(), StateJson) == JsonSerializer.Serialize(model.ExportState(), StateJson), $"{when}: the states differ");
        Assert.True(ModelSteps.Fingerprint(managed) == ModelSteps.Fingerprint(model), $"{when}: the fingerprints differ");
    }

    /// <summary>Every kind of read a model answers, each as text to compare.</summary>
    private static (string Name, Func<ModelRoutingStats, string> Read)[] ReadKinds(int[] ranks) =>
    [
        ("summary", m => JsonSerializer.Serialize(m.Summary())),
        ("layer totals", m => Layers(m, layer => $"{layer.TotalRoutings},{layer.TotalTokens},{layer.RoutedSlots},{layer.SlotsDropped},{layer.InvalidExpertIds},{layer.AverageLoadBalanceLoss},{layer.AverageRouterZLoss},{layer.RoutingEfficiency}")),
        ("window load, newest step", m => string.Join(",", m.WindowLoad(1))),
        ("layer capacity", m => Layers(m, layer => JsonSerializer.Serialize(layer.CapacityStats))),
        ("summary by rank", m => JsonSerializer.Serialize(m.Summary(ranks))),
        ("layer utilization", m => Layers(m, layer => string.Join(",", layer.ExpertUtilization) + "/" + string.Join(",", layer.DecayedExpertUtilization) + "/" + string.Join(",", layer.ExpertTokenCounts))),
        ("device arrays", DeviceArraysRead),
        ("layer cv and trend", m => Layers(m, layer => $"{layer.UtilizationCv()},{layer.RecentLoadVarianceTrend(3)},{layer.MostUtilizedExpert()},{string.Join(",", layer.LoadVarianceHistory)}")),
        ("JSON", m => JsonSerializer.Serialize(m)),
        ("snapshot", m => { using var s = m.Snapshot(); return ModelSteps.Fingerprint(s); }),
        ("recent summary", m => JsonSerializer.Serialize(m.Summary(1))),
        ("layer snapshot", m => Layers(m, layer => { using var s = layer.Snapshot(); return ModelSteps.Fingerprint(s); })),
        ("merge", m => { using var merged = ModelRoutingStats.Merge([m]); return ModelSteps.Fingerprint(merged); }),
        ("window load", m => string.Join(",", m.WindowLoad())),
    ];

    /// <summary>The device arrays' counts and window load; the managed engine's figures where it has none.</summary>
    private static string DeviceArraysRead(ModelRoutingStats model)
    {
        if (model.Backend == "managed")
        {
            var summary = model.Summary();
            return $"{summary.Steps},{summary.WindowSteps}|" + string.Join(",", model.WindowLoad());
        }

        var arrays = model.DeviceArrays();
        var load = new ulong[arrays.WindowLoad.Length];
        arrays.WindowLoad.CopyToCPU(arrays.Stream, load);
        arrays.Stream.Synchronize();
        return $"{arrays.Steps},{arrays.WindowSteps}|" + string.Join(",", load);
    }

    private static string Layers(ModelRoutingStats model, Func<RoutingStats, string> read) =>
        string.Join("\n", Enumerable.Range(0, model.Layers).Select(l =>
        {
            using var layer = model.Layer(l);
            return read(layer);
        }));
}
