using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// The best engine present for one layer is CUDA, then OpenCL; for a whole model, and for anything the C API's "auto"
/// makes, CUDA alone: OpenCL runs there only when named.
/// </summary>
public sealed class AcceleratorSelectionTests
{
    [Fact]
    public void AModelsBestEngineLeavesOpenClOutUnlessItIsNamed()
    {
        Assert.Equal([AcceleratorType.Cuda, AcceleratorType.OpenCL], AcceleratorSelection.Order(""));
        Assert.Equal([AcceleratorType.Cuda], AcceleratorSelection.Order("", AcceleratorSelection.ModelBestFirst));
        Assert.Equal([AcceleratorType.OpenCL], AcceleratorSelection.Order("opencl", AcceleratorSelection.ModelBestFirst));
        Assert.Empty(AcceleratorSelection.Order("managed", AcceleratorSelection.ModelBestFirst)!);
    }

    [Fact]
    public void TheCApisAutoLeavesOpenClOutUnlessItIsNamed()
    {
        Assert.Equal([AcceleratorType.Cuda], AcceleratorSelection.Order("", AcceleratorSelection.ForeignMemoryBestFirst));
        Assert.Equal([AcceleratorType.OpenCL], AcceleratorSelection.Order("opencl", AcceleratorSelection.ForeignMemoryBestFirst));
    }

    /// <summary>
    /// A program that cannot generate code (native AOT; a file-based program's PublishAot) runs no ILGPU kernel: the best
    /// engine is the managed one, without creating ILGPU's context (whose type initializer throws there), and an
    /// accelerator named is refused in one line saying what to change.
    /// </summary>
    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("cpu")]
    [InlineData("cuda")]
    [InlineData("managed")]
    public void WithoutCodeGenerationTheBestEngineIsManagedAndANamedAcceleratorIsRefused(string? requested)
    {
        var onDevice = 0;
        string Choose() => AcceleratorSelection.Choose(requested, (_, owned) => { onDevice++; owned.Dispose(); return "device"; }, () => "managed", dynamicCode: false);

        if (string.IsNullOrEmpty(requested) || requested == "managed")
        {
            Assert.Equal("managed", Choose());
        }
        else
        {
            var refused = Assert.Throws<InvalidOperationException>(Choose);
            Assert.Equal(
                $"MOEGS_ACCELERATOR={requested}, but this program cannot generate code (native AOT, or PublishAot set, as a file-based program sets it), which ILGPU's kernels need: use managed, or set PublishAot to false.",
                refused.Message);
        }

        Assert.Equal(0, onDevice);
    }

    /// <summary>Where code can be generated, a named CPU accelerator is ILGPU's, as before.</summary>
    [Fact]
    public void WithCodeGenerationANamedCpuAcceleratorRuns() =>
        Assert.Equal("device", AcceleratorSelection.Choose("cpu", (_, owned) => { owned.Dispose(); return "device"; }, () => "managed", dynamicCode: true));
}
