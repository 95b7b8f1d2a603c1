using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// A read begun without waiting and taken after a later blocking read has counted the device's steps: its older count
/// does not take the host's count (ModelDeviceArrays.Steps) back. Here no BeginRead comes between them, which would
/// take the older reading's results first (its copy arrived at its begin on ILGPU's CPU accelerator).
/// </summary>
public sealed partial class DeviceModelEngineTests
{
    [Fact]
    public void APendingReadTakenAfterABlockingReadLeavesTheNewerCount()
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

        using var older = model.BeginRead();
        engine.Replay<int>(ids.View, captured, default);   // the host does not count it: only a read does
        Assert.Equal(3UL, model.Summary().Steps);
        Assert.Equal(3UL, model.DeviceArrays().Steps);

        Assert.Equal(2UL, older.Summary.Steps);
        Assert.Equal(3UL, model.DeviceArrays().Steps);
    }
}
