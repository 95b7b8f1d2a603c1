using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// The best engine present for one layer is CUDA, then OpenCL; for a whole model CUDA alone, as the model engine failed
/// its tests on OpenCL (PoCL): OpenCL runs a model only when named.
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
}
