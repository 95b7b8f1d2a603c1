using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Model;

/// <summary>The model shapes the product must hold, on the device against the managed engine, and the memory they take.</summary>
public sealed class ModelShapeTests
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

    [Fact]
    public void TheWindowRingDominatesTheDeviceMemory()
    {
        var deepSeek = new ModelRoutingStatsOptions { Layers = 58, Experts = 256 };
        Assert.InRange(deepSeek.DeviceStateBytes, 63_000_000, 65_000_000);
        Assert.True(4L * 1000 * 58 * 256 > deepSeek.DeviceStateBytes * 0.9);
    }
}
