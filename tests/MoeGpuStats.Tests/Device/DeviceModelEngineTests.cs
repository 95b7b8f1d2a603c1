using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// The device engine of a whole model (DeviceModelEngine): the model shapes the product must hold equal
/// the managed engine, and one set of launch arguments, captured once, records many steps (a CUDA graph
/// replays a launch with the same arguments every step, so nothing a step needs may come from the host
/// per step).
/// </summary>
public sealed class DeviceModelEngineTests
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
        Assert.Equal(options.DeviceStateBytes, engine.StateBytes);
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
        var captured = engine.StepArguments(rows, topK, stride);

        var random = new Random(17);
        var recorded = new List<ModelSteps.Step>();
        for (var step = 0; step < 15; step++)
        {
            // The step's ids and valid rows change in device memory only; the arguments never change.
            var count = step % 5 == 2 ? 0 : random.Next(1, rows + 1);
            var host = new int[options.Layers * stride];
            for (var i = 0; i < host.Length; i++)
            {
                host[i] = i % stride >= count * topK ? 9999 : random.Next(8) == 0 ? -1 : random.Next(step % 3 == 0 ? 2 : options.Experts);
            }

            ids.View.CopyFromCPU(host);
            valid.View.CopyFromCPU([count]);
            engine.RecordStep(ids.View, captured, valid.View);
            managed.RecordStep(host, count, topK, stride);
            recorded.Add(new ModelSteps.Step(host, rows, topK, stride, count, new float[options.Layers], []));
            if (step % 4 == 3)
            {
                Assert.Equal(ModelSteps.Fingerprint(managed), ModelSteps.Fingerprint(model));
            }
        }

        Assert.Equal(ModelSteps.Fingerprint(managed), ModelSteps.Fingerprint(model));
        Assert.Equal(ModelSteps.WindowLoad(options, recorded), model.WindowLoad());
    }
}
