using System.Runtime.InteropServices;
using ILGPU.Runtime;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Tests.Interop;

/// <summary><see cref="ForeignMemory"/>: memory allocated outside the engine, wrapped and read in place.</summary>
public sealed unsafe class ForeignMemoryTests
{
    [Fact]
    public void HostMemoryIsReadInPlaceOnTheCpuAccelerator()
    {
        var accelerator = TestAccelerators.Require("cpu");
        int[] routed = [0, 3, 3, 1, 7, 0, 3, 2];
        var memory = (int*)NativeMemory.Alloc((nuint)routed.Length, sizeof(int));
        try
        {
            routed.CopyTo(new Span<int>(memory, routed.Length));
            using var stats = RoutingStats.OnDevice(accelerator, new RoutingStatsOptions { Experts = 8 });
            using (var view = ForeignMemory.Wrap<int>(accelerator, (IntPtr)memory, routed.Length))
            {
                stats.RecordRouting(view.View, tokens: 4, topK: 2);
            }

            Assert.Equal([2UL, 1UL, 1UL, 3UL, 0UL, 0UL, 0UL, 1UL], stats.ExpertTokenCounts);
            Assert.Equal(routed, new Span<int>(memory, routed.Length).ToArray());
        }
        finally
        {
            NativeMemory.Free(memory);
        }
    }

    [Fact]
    public void ANullPointerOrNegativeLengthIsRejected()
    {
        var accelerator = TestAccelerators.Require("cpu");
        var error = Assert.Throws<ArgumentException>(() => ForeignMemory.Wrap<int>(accelerator, IntPtr.Zero, 4));
        Assert.Equal("pointer", error.ParamName);
        Assert.StartsWith("pointer is 0 (null); give the address of the memory to wrap", error.Message);
        Assert.Equal("length", Assert.Throws<ArgumentOutOfRangeException>(() => ForeignMemory.Wrap<int>(accelerator, (IntPtr)64, -1)).ParamName);
    }

    /// <summary>A device pointer allocated outside the engine (here by ILGPU itself) is read in place on CUDA.</summary>
    [Fact]
    public void ACudaDevicePointerIsReadInPlace()
    {
        var accelerator = TestAccelerators.Require("cuda");
        using var owned = accelerator.Allocate1D([0, 3, 3, 1, 7, 0, 3, 2]);
        using var stats = RoutingStats.OnDevice(accelerator, new RoutingStatsOptions { Experts = 8 });
        using (var view = ForeignMemory.Wrap<int>(accelerator, owned.NativePtr, owned.Length))
        {
            stats.RecordRouting(view.View, tokens: 4, topK: 2);
            Assert.Equal([2UL, 1UL, 1UL, 3UL, 0UL, 0UL, 0UL, 1UL], stats.ExpertTokenCounts);
        }
    }

    [Fact]
    public void HostMemoryIsNotACudaDevicePointer()
    {
        var accelerator = TestAccelerators.Require("cuda");
        var host = NativeMemory.Alloc(64);
        try
        {
            var error = Assert.Throws<ArgumentException>(() => ForeignMemory.Wrap<int>(accelerator, (IntPtr)host, 16));
            Assert.Equal("pointer", error.ParamName);
        }
        finally
        {
            NativeMemory.Free(host);
        }
    }
}
