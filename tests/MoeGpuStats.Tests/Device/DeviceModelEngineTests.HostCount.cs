using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// What ModelDeviceArrays.Steps documents: the device's count at the model's last read, a layer's
/// read among them, plus the records since.
/// </summary>
public sealed partial class DeviceModelEngineTests
{
    [Fact]
    public void ALayersReadRefreshesTheDeviceArraysCount()
    {
        var accelerator = TestAccelerators.Require("cpu");
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 8, Window = 4 };
        const int rows = 4, topK = 2, stride = rows * topK;
        var engine = new DeviceModelEngine(accelerator, options);
        using var model = new ModelRoutingStats(engine);
        using var ids = accelerator.Allocate1D<int>(options.Layers * stride);
        ids.View.CopyFromCPU(new int[options.Layers * stride]);
        var captured = engine.StepArguments(rows, topK, stride, topK);
        engine.Replay<int>(ids.View, captured, default);
        engine.Replay<int>(ids.View, captured, default);
        using var layer = model.Layer(0);
        Assert.Equal(2UL, layer.TotalRoutings);   // the device's count, read through a layer
        Assert.Equal(2UL, model.DeviceArrays().Steps);
    }
}
