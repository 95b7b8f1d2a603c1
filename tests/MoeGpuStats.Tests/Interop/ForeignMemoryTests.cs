using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Device;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Tests.Interop;

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
        Assert.Equal("pointer", Assert.Throws<ArgumentException>(() => ForeignMemory.Wrap<int>(accelerator, IntPtr.Zero, 4)).ParamName);
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

    /// <summary>
    /// The producer fills the ids on its own stream; the engine's stream waits for it on the device,
    /// and the producer's next fill waits for the record: the counts are those of the first fill.
    /// </summary>
    [Fact]
    public void TheBridgeOrdersARecordAfterTheProducerAndTheProducerAfterTheRecord()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        using var producer = (CudaStream)accelerator.CreateStream();
        using var ids = accelerator.Allocate1D<int>(1 << 24);
        using var device = new DeviceRoutingStats(accelerator, new RoutingStatsOptions { Experts = 4 });
        using var bridge = new CudaStreamBridge(device);
        using var stats = RoutingStats.OnDevice(device);

        ids.View.MemSetToZero(producer);                 // every id 0: all slots go to expert 0
        bridge.WaitForProducer(producer.StreamPtr);
        stats.RecordRouting(ids.View, tokens: 1 << 23, topK: 2);
        bridge.SignalConsumer(producer.StreamPtr);
        ids.View.MemSet(producer, 1);                    // 0x01010101: an invalid id, if the record read it

        Assert.Equal(1UL << 24, stats.ExpertTokenCounts[0]);
        Assert.Equal(0UL, stats.InvalidExpertIds);
    }

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

    /// <summary>
    /// PyTorch's situation: the ids are written in the device's primary context (the CUDA runtime's)
    /// on that context's NULL stream, handed over as a NULL stream. The record is ordered after the
    /// fill and the next fill after the record, and the primary context is current again after
    /// every call.
    /// </summary>
    [Fact]
    public void ANullStreamOrdersAgainstTheDefaultStreamOfTheCallersContext()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        var before = CudaContextScope.CurrentContext();
        const int length = 1 << 24;
        using (var producer = new PrimaryContextProducer(accelerator.DeviceId, length))
        {
            DeviceRoutingStats device;
            RoutingStats stats;
            ForeignView<int> view;
            using (CudaContextScope.Enter(accelerator))
            {
                device = new DeviceRoutingStats(accelerator, new RoutingStatsOptions { Experts = 4 });
                stats = RoutingStats.OnDevice(device);
                view = ForeignMemory.Wrap<int>(accelerator, producer.Pointer, length);
            }

            using var bridge = new CudaStreamBridge(device);
            producer.Fill(0);                                 // every id 0
            bridge.WaitForProducer(IntPtr.Zero);
            using (CudaContextScope.Enter(accelerator))
            {
                stats.RecordRouting(view.View, tokens: length / 2, topK: 2);
            }

            bridge.SignalConsumer(IntPtr.Zero);
            producer.Fill(0x01010101);                        // an invalid id, if the record read it
            Assert.Equal(producer.Context, CudaContextScope.CurrentContext());

            using (CudaContextScope.Enter(accelerator))
            {
                Assert.Equal((ulong)length, stats.ExpertTokenCounts[0]);
                Assert.Equal(0UL, stats.InvalidExpertIds);
                view.Dispose();
                stats.Dispose();
            }

            Assert.Equal(producer.Context, CudaContextScope.CurrentContext());
        }

        Assert.Equal(before, CudaContextScope.CurrentContext());
    }
}
