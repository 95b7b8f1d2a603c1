using ILGPU.Runtime.Cuda;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>
/// <see cref="CudaLaunchBounds"/>: this ILGPU has what loading launch bounds needs, and PTX that bounds
/// its launches already gets no second set. (Whether the engine's kernel has them is DeviceRoutingStatsTests'.)
/// </summary>
public sealed class CudaLaunchBoundsTests
{
    [Fact]
    public void ThisIlgpuHasTheInternalsThatLoadingLaunchBoundsNeeds()
    {
        Assert.True(CudaLaunchBounds.Supported, $"This ILGPU lacks {CudaLaunchBounds.Missing}.");
        Assert.Equal("", CudaLaunchBounds.Missing);
    }

    [Theory]
    [InlineData(".maxntid 256, 1, 1")]
    [InlineData(".reqntid 128, 1, 1")]
    [InlineData(".minnctapersm 4")]
    [InlineData(".maxnctapersm 4")]
    [InlineData(".maxnreg 40")]
    public void PtxWhoseEntryBoundsItsLaunchesGetsNoMoreDirectives(string directive)
    {
        // The query kernel, which ILGPU compiles without launch bounds.
        var ptx = KernelPtx.Generate(nameof(UtilizationQueryKernel), CudaArchitecture.SM_90, CudaInstructionSet.ISA_78);
        var body = ptx.IndexOf("\n{", ptx.IndexOf(".entry ", StringComparison.Ordinal), StringComparison.Ordinal);
        var error = Assert.Throws<ArgumentException>(() => CudaLaunchBounds.Add(ptx.Insert(body, "\n" + directive), 256, 2048));
        Assert.Equal("ptx", error.ParamName);
        Assert.Contains(directive.Split(' ')[0], error.Message, StringComparison.Ordinal);
        Assert.Contains(".maxntid 256, 1, 1", CudaLaunchBounds.Add(ptx, 256, 2048), StringComparison.Ordinal);
    }
}
