using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels.Model;

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
        using var replayed = new UncountedReplays();
        replayed.Replay();
        replayed.Replay();
        using var layer = replayed.Model.Layer(0);
        Assert.Equal(2UL, layer.TotalRoutings);   // the device's count, read through a layer
        Assert.Equal(2UL, replayed.Model.DeviceArrays().Steps);
    }

    /// <summary>
    /// A model of 2 layers of 8 experts on the CPU accelerator and a captured step of 4 tokens of top-2 zeros, replayed
    /// as a CUDA graph replays it: the host does not count those steps, only a read does.
    /// </summary>
    private sealed class UncountedReplays : IDisposable
    {
        private const int Rows = 4, TopK = 2, Stride = Rows * TopK;
        private readonly DeviceModelEngine _engine;
        private readonly MemoryBuffer1D<int, Stride1D.Dense> _ids;
        private readonly ModelStepArguments _captured;

        public UncountedReplays()
        {
            var accelerator = TestAccelerators.Require("cpu");
            var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 8, Window = 4 };
            _engine = new DeviceModelEngine(accelerator, options);
            Model = new ModelRoutingStats(_engine);
            _ids = accelerator.Allocate1D<int>(options.Layers * Stride);
            _ids.View.CopyFromCPU(new int[options.Layers * Stride]);
            _captured = _engine.StepArguments(Rows, TopK, Stride, TopK);
        }

        public ModelRoutingStats Model { get; }

        public void Replay() => _engine.Replay<int>(_ids.View, _captured, default);

        public void Dispose()
        {
            _ids.Dispose();
            Model.Dispose();
        }
    }
}
