using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Device;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Tests.Interop;

/// <summary><see cref="CudaStreamBridge"/>: a record or a model's read ordered after a producer's stream, and the producer after it.</summary>
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

        ids.View.MemSet(accelerator.DefaultStream, 1);   // invalid ids until the producer's fill: a record that overtakes it counts them
        accelerator.Synchronize();
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

    /// <summary>
    /// A model's step ordered as C's <c>moegs_model_record</c> orders it: the producer fills the ids on
    /// its own stream, the model's stream waits for the fill, and the producer's next fill (invalid ids,
    /// if the step read them) waits for the step.
    /// </summary>
    [Fact]
    public void TheBridgeOrdersAModelsStepAfterTheProducerAndTheProducerAfterTheStep()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        var options = new ModelRoutingStatsOptions { Layers = 4, Experts = 8, Window = 4 };
        const int tokens = 1 << 20, topK = 2;
        using var producer = (CudaStream)accelerator.CreateStream();
        using var ids = accelerator.Allocate1D<int>((long)options.Layers * tokens * topK);
        using var model = ModelRoutingStats.OnDevice(accelerator, options);
        using var bridge = new CudaStreamBridge(model);

        ids.View.MemSet(accelerator.DefaultStream, 1);   // invalid ids until the producer's fill: a step that overtakes it counts them
        accelerator.Synchronize();
        ids.View.MemSetToZero(producer);                 // every id 0: all slots to expert 0
        bridge.WaitForProducer(producer.StreamPtr);
        model.RecordStep(ids.View, tokens, topK);
        bridge.SignalConsumer(producer.StreamPtr);
        ids.View.MemSet(producer, 1);                    // 0x01010101: an invalid id, if the step read it

        var load = model.WindowLoad();
        for (var layer = 0; layer < options.Layers; layer++)
        {
            Assert.Equal((ulong)tokens * topK, load[layer * options.Experts]);
            Assert.Equal(0UL, model.Layer(layer).InvalidExpertIds);
        }
    }

    /// <summary>
    /// A C# server's CUDA graph: the step is captured on the replay stream through the bridge (the model
    /// has a stream of its own), and a <see cref="ModelRoutingStats.BeginRead"/> is ordered after the
    /// replays enqueued before it and before the one after, with no wait on the host: it reads the
    /// steps replayed before it, and the model then reads every replay.
    /// </summary>
    [Fact]
    public void ABridgedBeginReadIsOrderedBetweenReplaysOfACapturedStep()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        var options = new ModelRoutingStatsOptions { Layers = 3, Experts = 16, Window = 5 };
        const int tokens = 64, topK = 2;
        using var replay = (CudaStream)accelerator.CreateStream();
        using var model = ModelRoutingStats.OnDevice(accelerator, options);
        using var bridge = new CudaStreamBridge(model);
        using var managed = new ModelRoutingStats(options);
        using var ids = accelerator.Allocate1D<int>(options.Layers * tokens * topK);
        var random = new Random(41);

        void Write()
        {
            var host = new int[ids.Length];
            for (var i = 0; i < host.Length; i++)
            {
                host[i] = random.Next(8) == 0 ? -1 : random.Next(options.Experts);
            }

            ids.View.CopyFromCPU(replay, host);
            managed.RecordStep(host, tokens, topK);
        }

        void Step()
        {
            bridge.WaitForProducer(replay.StreamPtr);
            model.RecordStep(ids.View, tokens, topK);
            bridge.SignalConsumer(replay.StreamPtr);
        }

        // One step outside the graph first: the kernel's first launch (module loading) is not captured.
        Write();
        Step();
        using var graph = CudaGraph.Capture(accelerator, replay, Step);
        for (var step = 1; step < 7; step++)
        {
            Write();
            graph.Launch(replay);
        }

        var expectedSummary = System.Text.Json.JsonSerializer.Serialize(managed.Summary());
        var expectedLoad = managed.WindowLoad();
        bridge.WaitForProducer(replay.StreamPtr);
        using var pending = model.BeginRead();
        bridge.SignalConsumer(replay.StreamPtr);
        Write();
        graph.Launch(replay);
        pending.Wait();

        Assert.Equal(expectedSummary, System.Text.Json.JsonSerializer.Serialize(pending.Summary));
        Assert.Equal(expectedLoad, pending.WindowLoad);
        replay.Synchronize();
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(managed.Summary()), System.Text.Json.JsonSerializer.Serialize(model.Summary()));
        Assert.Equal(managed.WindowLoad(), model.WindowLoad());
    }

    /// <summary>A model whose stream went with it: the bridge refuses to order against the freed stream.</summary>
    [Fact]
    public void ABridgeRefusesToOrderOnceItsModelIsDisposed()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        using var producer = (CudaStream)accelerator.CreateStream();
        var model = ModelRoutingStats.OnDevice(accelerator, new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
        using var bridge = new CudaStreamBridge(model);
        model.Dispose();

        var error = Assert.Throws<ObjectDisposedException>(() => bridge.WaitForProducer(producer.StreamPtr));
        Assert.Contains("dispose the bridge before the engine", error.Message, StringComparison.Ordinal);
        Assert.Throws<ObjectDisposedException>(() => bridge.SignalConsumer(producer.StreamPtr));
        Assert.Throws<ObjectDisposedException>(() => bridge.WaitForProducerEvent(IntPtr.Zero));
    }

    /// <summary>
    /// A zero event is refused before the driver is called, naming the argument, and the bridge still
    /// orders afterwards: the step after the refusal counts the producer's fill.
    /// </summary>
    [Fact]
    public void AZeroProducerEventIsRefusedAndTheBridgeStillOrders()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 4 };
        using var producer = (CudaStream)accelerator.CreateStream();
        using var ids = accelerator.Allocate1D<int>(options.Layers * 8L);
        using var model = ModelRoutingStats.OnDevice(accelerator, options);
        using var bridge = new CudaStreamBridge(model);

        var error = Assert.Throws<ArgumentException>(() => bridge.WaitForProducerEvent(IntPtr.Zero));
        Assert.Equal("producerEvent", error.ParamName);
        Assert.StartsWith("producerEvent is 0x0; give an event the producer recorded", error.Message, StringComparison.Ordinal);

        ids.View.MemSetToZero(producer);
        bridge.WaitForProducer(producer.StreamPtr);
        model.RecordStep(ids.View, tokens: 4, topK: 2);
        bridge.SignalConsumer(producer.StreamPtr);
        Assert.Equal(8UL, model.WindowLoad()[0]);
    }

    /// <summary>Only an engine on CUDA has a stream to bridge: a managed model or an engine on ILGPU's CPU accelerator is refused, naming the argument.</summary>
    [Fact]
    public void ABridgeRefusesAnEngineOffCuda()
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 4 };
        using var managed = new ModelRoutingStats(options);
        var error = Assert.Throws<ArgumentException>(() => new CudaStreamBridge(managed));
        Assert.Equal("model", error.ParamName);
        Assert.StartsWith("model runs on the managed engine, not CUDA", error.Message, StringComparison.Ordinal);

        var cpu = TestAccelerators.Require("cpu");
        using var onCpu = ModelRoutingStats.OnDevice(cpu, options);
        error = Assert.Throws<ArgumentException>(() => new CudaStreamBridge(onCpu));
        Assert.Equal("model", error.ParamName);
        Assert.StartsWith("model runs on CPU, not CUDA", error.Message, StringComparison.Ordinal);

        using var layer = new DeviceRoutingStats(cpu, new RoutingStatsOptions { Experts = 4 });
        error = Assert.Throws<ArgumentException>(() => new CudaStreamBridge(layer));
        Assert.Equal("engine", error.ParamName);

        Assert.Throws<ArgumentNullException>(() => new CudaStreamBridge((ModelRoutingStats)null!));
        Assert.Throws<ArgumentNullException>(() => new CudaStreamBridge((DeviceRoutingStats)null!));

        // Disposed statistics are refused before their engine is looked at, naming the argument.
        managed.Dispose();
        layer.Dispose();
        error = Assert.Throws<ArgumentException>(() => new CudaStreamBridge(managed));
        Assert.Equal("model cannot be used: This ModelRoutingStats was disposed. (Parameter 'model')", error.Message);
        error = Assert.Throws<ArgumentException>(() => new CudaStreamBridge(layer));
        Assert.Equal("engine cannot be used: This DeviceRoutingStats was disposed. (Parameter 'engine')", error.Message);
    }
}
