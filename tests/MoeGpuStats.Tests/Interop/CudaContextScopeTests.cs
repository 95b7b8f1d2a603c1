using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Tests.Interop;

/// <summary><see cref="CudaContextScope"/>: the thread's CUDA context inside a scope and after it.</summary>
public sealed class CudaContextScopeTests
{
    [Fact]
    public void AContextScopeOffCudaTouchesNoCudaDriver()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using (CudaContextScope.Enter(accelerator))
        {
            using var stats = RoutingStats.OnDevice(accelerator, new RoutingStatsOptions { Experts = 2 });
            stats.RecordRouting([0, 1, 1], tokens: 3, topK: 1);
            Assert.Equal([1UL, 2UL], stats.ExpertTokenCounts);
        }

        CudaContextScope.RestoreAfterCreate(accelerator, IntPtr.Zero);
    }

    /// <summary>
    /// Code written for CUDA and CPU alike asks for the thread's context before creating an accelerator: without a
    /// CUDA driver that is zero, not a DllNotFoundException, and restoring it after a CPU accelerator does nothing.
    /// </summary>
    [Fact]
    public void TheCurrentContextIsZeroWithoutACudaDriver()
    {
        if (System.Runtime.InteropServices.NativeLibrary.TryLoad("libcuda.so.1", out var driver))
        {
            System.Runtime.InteropServices.NativeLibrary.Free(driver);
            Assert.Skip("A CUDA driver is installed here: the context is whatever this thread has.");
        }

        var caller = CudaContextScope.CurrentContext();
        Assert.Equal(IntPtr.Zero, caller);
        CudaContextScope.RestoreAfterCreate(TestAccelerators.Require("cpu"), caller);
    }

    /// <summary>
    /// A thread whose current context is another one (the CUDA runtime's primary context, as under
    /// PyTorch) gets it back after a scope, and ILGPU's context is current inside it.
    /// </summary>
    [Fact]
    public void AContextScopeGivesTheThreadItsContextBack()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        using var otherContext = Context.Create(builder => builder.Cuda());
        var caller = CudaContextScope.CurrentContext();
        using var other = otherContext.CreateCudaAccelerator(0);
        CudaContextScope.RestoreAfterCreate(other, caller);
        Assert.Equal(caller, CudaContextScope.CurrentContext());

        using (var callerScope = CudaContextScope.Enter(other))
        {
            var producerContext = CudaContextScope.CurrentContext();
            Assert.Equal(other.NativePtr, producerContext);
            using (CudaContextScope.Enter(accelerator))
            {
                Assert.Equal(accelerator.NativePtr, CudaContextScope.CurrentContext());
                using var stats = RoutingStats.OnDevice(accelerator, new RoutingStatsOptions { Experts = 4 });
                using var ids = accelerator.Allocate1D<int>([3, 3, 1, 0]);
                stats.RecordRouting(ids.View, tokens: 4, topK: 1);
                Assert.Equal(2UL, stats.ExpertTokenCounts[3]);
            }

            Assert.Equal(producerContext, CudaContextScope.CurrentContext());
        }

        Assert.Equal(caller, CudaContextScope.CurrentContext());
    }
}
