using MoeGpuStats.Kernels.Model;

namespace MoeGpuStats.Tests.Kernels.Model;

/// <summary>The launcher's own checks: no launch reads or writes outside a view, whatever its caller passed.</summary>
public sealed class ModelRecordLauncherTests
{
    [Fact]
    public void ALaunchOutsideItsViewsIsRefusedBeforeAnythingIsEnqueued()
    {
        var accelerator = TestAccelerators.Require("cpu");
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 8, Window = 3 };
        var engine = new MoeGpuStats.Device.DeviceModelEngine(accelerator, options);
        using var model = new ModelRoutingStats(engine);
        var arguments = engine.StepArguments(tokens: 4, topK: 2, layerStride: 8, tokenStride: 2);
        using var ids = accelerator.Allocate1D<int>(16);
        using var small = new ModelRoutingStats(new MoeGpuStats.Device.DeviceModelEngine(accelerator, options with { Layers = 1 }));

        Assert.Throws<ArgumentException>(() => engine.Replay<int>(ids.View.SubView(0, 15), arguments, default));
        Assert.Throws<ArgumentException>(() => engine.Replay<int>(ids.View, arguments with { LayerStride = 7 }, default));
        // The second layer's last id past long's range: unchecked, the extent wraps negative and passes the length check.
        Assert.Throws<ArgumentException>(() => engine.Replay<int>(ids.View, arguments with { LayerStride = long.MaxValue - 4 }, default));
        Assert.Throws<ArgumentException>(() => engine.Replay<int>(ids.View, arguments with { TokenStride = 1 }, default));
        // Interleaved layers whose rows overlap: layer 1's first row is layer 0's second.
        Assert.Throws<ArgumentException>(() => engine.Replay<int>(ids.View, arguments with { LayerStride = 2, TokenStride = 2 }, default));
        // Interleaved rows past the view: [4 tokens, 2 layers, 2] needs 16 ids, a token stride of 5 reaches 2 + 3 * 5 + 2 = 19.
        Assert.Throws<ArgumentException>(() => engine.Replay<int>(ids.View, arguments with { LayerStride = 2, TokenStride = 5 }, default));
        Assert.Throws<ArgumentOutOfRangeException>(() => engine.Replay<int>(ids.View, arguments with { Copies = 0 }, default));
        Assert.Throws<ArgumentOutOfRangeException>(() => engine.Replay<int>(ids.View, arguments with { Experts = 4097 }, default));
        Assert.Throws<ArgumentException>(() => engine.Replay<int>(ids.View, arguments with { Experts = 9 }, default));
        Assert.Throws<ArgumentException>(() => engine.Replay<int>(ids.View, arguments with { Layers = 3 }, default));
        Assert.Throws<ArgumentException>(() => engine.Replay<int>(ids.View, arguments with { Window = 4 }, default));
        Assert.Equal(0UL, model.Summary().Steps);
        Assert.All(model.WindowLoad(), load => Assert.Equal(0UL, load));
    }

    [Fact]
    public void AStepIsSizedToOneWaveWithAGroupPerLayerAtLeast()
    {
        var accelerator = TestAccelerators.Require(TestAccelerators.CpuWithFourMultiprocessors);
        var launcher = new ModelRecordLauncher(accelerator);
        var shape = new ModelStepArguments { Layers = 3, Experts = 256, Window = 10, TopK = 8 };
        var decode = launcher.Step(shape with { Tokens = 1 });
        Assert.Equal(1, decode.GroupsPerLayer);
        var prefill = launcher.Step(shape with { Tokens = 1 << 16 });
        Assert.True(prefill.GroupsPerLayer > 1);
        Assert.InRange(prefill.Copies, 1, 16);
        var many = launcher.Step(shape with { Layers = 1024, Tokens = 1 << 16 });
        Assert.Equal(1, many.GroupsPerLayer);
    }
}
