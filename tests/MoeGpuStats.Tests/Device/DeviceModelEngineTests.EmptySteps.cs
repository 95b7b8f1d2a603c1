using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// <see cref="ModelRoutingStatsOptions.SkipEmptySteps"/> decided on the device: one captured set of
/// arguments (and a real CUDA graph) leaves out the replays whose device count of valid rows is 0 or whose
/// valid rows are all padding, which the host never sees, and equals the managed engine fed the same steps.
/// </summary>
public sealed partial class DeviceModelEngineTests
{
    private static readonly ModelRoutingStatsOptions SkippingModel = new() { Layers = 4, Experts = 32, Window = 6, ExpertCapacity = 5, SkipEmptySteps = true };

    [Theory]
    [MemberData(nameof(Accelerators))]
    public void OneCapturedSetOfArgumentsLeavesOutEmptySteps(string kind)
    {
        var accelerator = TestAccelerators.Require(kind);
        const int rows = 24, topK = 3, stride = rows * topK + 8;
        var engine = new DeviceModelEngine(accelerator, SkippingModel);
        using var model = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(SkippingModel);
        using var ids = accelerator.Allocate1D<int>(SkippingModel.Layers * stride);
        using var valid = accelerator.Allocate1D<int>(1);
        var captured = engine.StepArguments(rows, topK, stride, topK);

        var random = new Random(23);
        var kept = new List<ModelSteps.Step>();
        for (var step = 0; step < 20; step++)
        {
            var (host, count) = EmptyOrRandomStep(random, step, rows, topK, stride);
            // On the engine's stream: OpenCL orders no queue after another, so a write on the default stream overtook the step before it.
            ids.View.CopyFromCPU(engine.Stream, host);
            valid.View.CopyFromCPU(engine.Stream, [count]);
            engine.Replay<int>(ids.View, captured, valid.View);
            managed.RecordStep(host, count, topK, stride);
            var recorded = new ModelSteps.Step(host, rows, topK, stride, count, new float[SkippingModel.Layers], []);
            if (recorded.HoldsToken(SkippingModel.Layers))
            {
                kept.Add(recorded);
            }

            if (step is 4 or 11 or 19)
            {
                AssertReadsEqual(managed, model, kept);
            }
        }

        Assert.InRange(kept.Count, SkippingModel.Window + 1, 14);
    }

    /// <summary>
    /// A host call of an empty step enqueues a launch the device leaves out: the device arrays' count, the
    /// host's, counts the call until a read takes the device's.
    /// </summary>
    [Fact]
    public void TheDeviceArraysCountAnEmptyStepUntilARead()
    {
        using var model = ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), SkippingModel);
        var ids = new int[SkippingModel.Layers * 2 * 3];
        model.RecordStep(Enumerable.Range(0, ids.Length).Select(i => i % 32).ToArray(), 2, 3);
        model.RecordStep(ids.Select(_ => -1).ToArray(), 2, 3);
        Assert.Equal(2UL, model.DeviceArrays().Steps);
        Assert.Equal(1UL, model.Summary().Steps);
        Assert.Equal(1UL, model.DeviceArrays().Steps);
    }

    /// <summary>
    /// The launch's last group reads every layer's padded rows, many layers to a thread: a token in the last of
    /// 1,024 layers, or in one far from the first, keeps its step, and only steps of padding everywhere are left out.
    /// </summary>
    [Fact]
    public void ATokenInAnyOfManyLayersKeepsItsStep()
    {
        var options = new ModelRoutingStatsOptions { Layers = ModelRoutingStatsOptions.MaxLayers, Experts = 2, Window = 3, SkipEmptySteps = true };
        using var model = ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), options);
        using var managed = new ModelRoutingStats(options);
        int[] OneToken(int layer)
        {
            var ids = Enumerable.Repeat(-1, options.Layers * 2).ToArray();
            if (layer >= 0)
            {
                ids[(layer * 2) + 1] = 1;
            }

            return ids;
        }

        foreach (var layer in new[] { options.Layers - 1, -1, 700, -1, 0, options.Layers - 2 })
        {
            model.RecordStep(OneToken(layer), 1, 2);
            managed.RecordStep(OneToken(layer), 1, 2);
        }

        Assert.Equal(4UL, model.Summary().Steps);
        Assert.Equal(managed.WindowLoad(), model.WindowLoad());
        Assert.Equal(new ulong[] { 0, 1 }, model.WindowLoad().Skip((options.Layers - 2) * 2).Take(2));
        Assert.Equal((4UL, 1UL), (model.Layer(700).TotalRoutings, model.Layer(700).TotalTokens));
        Assert.Equal((4UL, 1UL), (model.Layer(options.Layers - 1).TotalRoutings, model.Layer(options.Layers - 1).TotalTokens));
    }

    [Fact]
    public void ACudaGraphReplayOfADummyPassIsLeftOut()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        const int rows = 24, topK = 3, stride = rows * topK + 8;
        using var stream = (CudaStream)accelerator.CreateStream();
        using var model = ModelRoutingStats.OnDevice(accelerator, SkippingModel, stream);
        using var managed = new ModelRoutingStats(SkippingModel);
        using var ids = accelerator.Allocate1D<int>(SkippingModel.Layers * stride);
        using var valid = accelerator.Allocate1D<int>(1);
        var random = new Random(31);
        var kept = new List<ModelSteps.Step>();

        void Write(int step)
        {
            var (host, count) = EmptyOrRandomStep(random, step, rows, topK, stride);
            ids.View.CopyFromCPU(stream, host);
            valid.View.CopyFromCPU(stream, [count]);
            managed.RecordStep(host, count, topK, stride);
            var recorded = new ModelSteps.Step(host, rows, topK, stride, count, new float[SkippingModel.Layers], []);
            if (recorded.HoldsToken(SkippingModel.Layers))
            {
                kept.Add(recorded);
            }
        }

        Write(0);
        model.RecordStep(ids.View, rows, topK, stride, valid.View);
        using var graph = CudaGraph.Capture(accelerator, stream, () => model.RecordStep(ids.View, rows, topK, stride, valid.View));
        for (var step = 1; step < 16; step++)
        {
            Write(step);
            graph.Launch(stream);
            if (step is 3 or 15)
            {
                stream.Synchronize();
                AssertReadsEqual(managed, model, kept);
            }
        }
    }

    /// <summary>
    /// Every third step a dummy pass: no valid row, or valid rows of padding alone (rows past them
    /// holding ids); otherwise <see cref="RandomStep"/>'s, some with no valid row either.
    /// </summary>
    private static (int[] Ids, int Valid) EmptyOrRandomStep(Random random, int step, int rows, int topK, int stride)
    {
        if (step % 3 != 1)
        {
            return RandomStep(random, step, SkippingModel, rows, topK, stride);
        }

        var count = step % 2 == 0 ? 0 : random.Next(1, rows);
        var host = new int[SkippingModel.Layers * stride];
        for (var i = 0; i < host.Length; i++)
        {
            host[i] = i % stride < count * topK ? -1 : random.Next(SkippingModel.Experts);
        }

        return (host, count);
    }
}
