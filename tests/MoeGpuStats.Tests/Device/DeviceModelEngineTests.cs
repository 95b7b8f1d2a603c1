using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// The device engine of a whole model (DeviceModelEngine): the model shapes the product must hold equal
/// the managed engine, and one set of launch arguments, captured once, records many steps (a CUDA graph
/// replays a launch with the same arguments every step, so nothing a step needs may come from the host
/// per step).
/// </summary>
public sealed partial class DeviceModelEngineTests
{
    public static TheoryData<int, int, int, int, int> Shapes => new()
    {
        { 94, 128, 8, 16, 1000 },   // Qwen3-235B
        { 64, 1024, 8, 8, 20 },
        { 58, 256, 8, 4, 1000 },    // DeepSeek-V3
        { 1, 4096, 1, 3, 2 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void LargeModelsEqualTheManagedEngine(int layers, int experts, int topK, int tokens, int window)
    {
        var accelerator = TestAccelerators.Require("cpu");
        var options = new ModelRoutingStatsOptions { Layers = layers, Experts = experts, Window = window };
        var engine = new DeviceModelEngine(accelerator, options);
        using var device = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(options);
        Assert.Equal(options.DeviceStateBytes(), engine.StateBytes);
        var random = new Random(layers * experts);
        for (var step = 0; step < 3; step++)
        {
            var ids = Enumerable.Range(0, layers * tokens * topK).Select(_ => random.Next(-1, experts)).ToArray();
            device.RecordStep(ids, tokens, topK);
            managed.RecordStep(ids, tokens, topK);
        }

        Assert.Equal(managed.WindowLoad(), device.WindowLoad());
        foreach (var layer in new[] { 0, layers / 2, layers - 1 })
        {
            Assert.Equal(ModelSteps.Fingerprint(managed.Layer(layer)), ModelSteps.Fingerprint(device.Layer(layer)));
        }

        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(managed.Summary()), System.Text.Json.JsonSerializer.Serialize(device.Summary()));
    }

    public static TheoryData<string> Accelerators => ["cpu", TestAccelerators.CpuWithFourMultiprocessors, "cuda", "opencl"];

    [Theory]
    [MemberData(nameof(Accelerators))]
    public void OneCapturedSetOfArgumentsRecordsEveryStep(string kind)
    {
        var accelerator = TestAccelerators.Require(kind);
        var options = new ModelRoutingStatsOptions { Layers = 4, Experts = 32, Window = 6, ExpertCapacity = 5 };
        const int rows = 24, topK = 3, stride = rows * topK + 8;
        var engine = new DeviceModelEngine(accelerator, options);
        using var model = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(options);
        using var ids = accelerator.Allocate1D<int>(options.Layers * stride);
        using var valid = accelerator.Allocate1D<int>(1);
        var captured = engine.StepArguments(rows, topK, stride, topK);

        var random = new Random(17);
        var recorded = new List<ModelSteps.Step>();
        for (var step = 0; step < 15; step++)
        {
            // The step's ids and valid rows change in device memory only; the arguments never change.
            var (host, count) = RandomStep(random, step, options, rows, topK, stride);
            // On the engine's stream: OpenCL orders no queue after another, so a write on the default stream overtook the step before it.
            ids.View.CopyFromCPU(engine.Stream, host);
            valid.View.CopyFromCPU(engine.Stream, [count]);
            engine.Replay<int>(ids.View, captured, valid.View);
            managed.RecordStep(host, count, topK, stride);
            recorded.Add(new ModelSteps.Step(host, rows, topK, stride, count, new float[options.Layers], []));
            if (step is 0 or 5 or 14 || step % 4 == 3)
            {
                AssertReadsEqual(managed, model, recorded);
            }
        }

        Assert.Equal(ModelSteps.WindowLoad(options, recorded), model.WindowLoad());
        Assert.Equal(ModelSteps.Fingerprint(managed.Snapshot()), ModelSteps.Fingerprint(model.Snapshot()));

        // A replay after the last read: the device arrays' count is the host's, which has not seen it; a read counts it.
        engine.Replay<int>(ids.View, captured, valid.View);
        Assert.Equal((ulong)recorded.Count, model.DeviceArrays().Steps);
        Assert.Equal((ulong)recorded.Count + 1, model.Summary().Steps);
        Assert.Equal((ulong)recorded.Count + 1, model.DeviceArrays().Steps);

        // A window load, whole or cut, and a snapshot count them too.
        engine.Replay<int>(ids.View, captured, valid.View);
        model.WindowLoad();
        Assert.Equal((ulong)recorded.Count + 2, model.DeviceArrays().Steps);
        engine.Replay<int>(ids.View, captured, valid.View);
        model.WindowLoad(recentSteps: 1);
        Assert.Equal((ulong)recorded.Count + 3, model.DeviceArrays().Steps);
        engine.Replay<int>(ids.View, captured, valid.View);
        using (model.Snapshot())
        {
            Assert.Equal((ulong)recorded.Count + 4, model.DeviceArrays().Steps);
        }
    }

    /// <summary>
    /// A buffer laid out <c>[tokens, layers, k]</c>, as SGLang's routed-experts buffer, recorded where it
    /// lies by one captured set of arguments (layer stride k, token stride layers × k) whose valid rows
    /// come from device memory: every step equals the managed engine fed the same ids packed.
    /// </summary>
    [Theory]
    [MemberData(nameof(Accelerators))]
    public void OneCapturedSetOfInterleavedArgumentsRecordsEveryStep(string kind)
    {
        var accelerator = TestAccelerators.Require(kind);
        var options = new ModelRoutingStatsOptions { Layers = 4, Experts = 32, Window = 6, ExpertCapacity = 5 };
        const int rows = 24, topK = 3, stride = rows * topK;
        var engine = new DeviceModelEngine(accelerator, options);
        using var model = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(options);
        using var ids = accelerator.Allocate1D<int>(rows * options.Layers * topK);
        using var valid = accelerator.Allocate1D<int>(1);
        var captured = engine.StepArguments(rows, topK, topK, options.Layers * topK);

        var random = new Random(19);
        var recorded = new List<ModelSteps.Step>();
        for (var step = 0; step < 13; step++)
        {
            var (host, count) = RandomStep(random, step, options, rows, topK, stride);
            var packed = new ModelSteps.Step(host, rows, topK, stride, count, new float[options.Layers], []);
            // On the engine's stream: OpenCL orders no queue after another, so a write on the default stream overtook the step before it.
            ids.View.CopyFromCPU(engine.Stream, ModelSteps.Laid(packed, options.Layers, topK, options.Layers * topK)[..(int)ids.Length]);
            valid.View.CopyFromCPU(engine.Stream, [count]);
            engine.Replay<int>(ids.View, captured, valid.View);
            managed.RecordStep(host, count, topK, stride);
            recorded.Add(packed);
            if (step is 0 or 6 or 12)
            {
                AssertReadsEqual(managed, model, recorded);
            }
        }
    }

    /// <summary>
    /// A record captured in a real CUDA graph with the model's stream, then replayed with new ids and
    /// valid rows written before each replay: every replay records a step, which the host never sees.
    /// </summary>
    [Fact]
    public void ARecordCapturedInACudaGraphRecordsAStepAtEveryReplay()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        var options = new ModelRoutingStatsOptions { Layers = 4, Experts = 32, Window = 6, ExpertCapacity = 5 };
        const int rows = 24, topK = 3, stride = rows * topK + 8;
        using var stream = (CudaStream)accelerator.CreateStream();
        using var model = ModelRoutingStats.OnDevice(accelerator, options, stream);
        using var managed = new ModelRoutingStats(options);
        using var ids = accelerator.Allocate1D<int>(options.Layers * stride);
        using var valid = accelerator.Allocate1D<int>(1);
        var random = new Random(29);
        var recorded = new List<ModelSteps.Step>();

        void Write(int step)
        {
            var (host, count) = RandomStep(random, step, options, rows, topK, stride);
            ids.View.CopyFromCPU(stream, host);
            valid.View.CopyFromCPU(stream, [count]);
            managed.RecordStep(host, count, topK, stride);
            recorded.Add(new ModelSteps.Step(host, rows, topK, stride, count, new float[options.Layers], []));
        }

        // One step outside the graph first: the kernel's first launch (module loading) is not captured.
        Write(0);
        model.RecordStep(ids.View, rows, topK, stride, valid.View);
        using var graph = CudaGraph.Capture(accelerator, stream, () => model.RecordStep(ids.View, rows, topK, stride, valid.View));
        for (var step = 1; step < 12; step++)
        {
            Write(step);
            graph.Launch(stream);
            if (step is 1 or 6 or 11)
            {
                stream.Synchronize();
                AssertReadsEqual(managed, model, recorded);
            }
        }
    }

    /// <summary>A step's ids, <c>[layers, rows, topK]</c> at <paramref name="stride"/>, and its valid rows: some steps none, some to two experts, an eighth of the slots −1, the rows past the valid ones and the stride's gap out of range.</summary>
    private static (int[] Ids, int Valid) RandomStep(Random random, int step, ModelRoutingStatsOptions options, int rows, int topK, int stride)
    {
        var count = step % 5 == 2 ? 0 : random.Next(1, rows + 1);
        var host = new int[options.Layers * stride];
        for (var i = 0; i < host.Length; i++)
        {
            host[i] = i % stride >= count * topK ? 9999 : random.Next(8) == 0 ? -1 : random.Next(step % 3 == 0 ? 2 : options.Experts);
        }

        return (host, count);
    }

    /// <summary>
    /// Everything a reader sees of a model whose steps the host never counted: the steps, the window's
    /// steps, every cut of the window to its newest steps, each layer, the device arrays' counts.
    /// </summary>
    private static void AssertReadsEqual(ModelRoutingStats managed, ModelRoutingStats model, List<ModelSteps.Step> recorded)
    {
        var window = model.Options.Window;
        Assert.Equal(ModelSteps.Fingerprint(managed), ModelSteps.Fingerprint(model));
        var summary = model.Summary();
        Assert.Equal((ulong)recorded.Count, summary.Steps);
        Assert.Equal(Math.Min(recorded.Count, window), summary.WindowSteps);
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(managed.Summary()), System.Text.Json.JsonSerializer.Serialize(summary));
        for (var recent = 1; recent <= window; recent++)
        {
            Assert.Equal(ModelSteps.WindowLoad(model.Options, recorded.TakeLast(recent).ToList()), model.WindowLoad(recent));
            Assert.Equal(System.Text.Json.JsonSerializer.Serialize(managed.Summary(recent)), System.Text.Json.JsonSerializer.Serialize(model.Summary(recent)));
        }

        var arrays = model.DeviceArrays();
        Assert.Equal((ulong)recorded.Count, arrays.Steps);
        Assert.Equal(Math.Min(recorded.Count, window), arrays.WindowSteps);
    }
}
