using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Device;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Tests.Interop;

/// <summary><see cref="CudaStreamBridge"/>: a record ordered after a producer's stream, and the producer after the record.</summary>
public sealed class CudaStreamBridgeTests
{
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
