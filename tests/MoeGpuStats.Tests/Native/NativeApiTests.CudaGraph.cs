using ILGPU.Runtime.Cuda;
using MoeGpuStats.Native;

namespace MoeGpuStats.Tests.Native;

/// <summary><c>moegs_model_record</c> captured in a CUDA graph as a PyTorch server captures its forward pass: on a side stream of the primary context.</summary>
public sealed unsafe partial class NativeApiTests
{
    /// <summary>
    /// The ids and the valid-row count live in the producer's memory (the primary context); the record
    /// is captured once on the producer's stream, through the bridge's events, and each replay after
    /// new ids are written records a step: every read through the C API equals a model recorded directly.
    /// </summary>
    [Fact]
    public void AModelRecordCapturedInACudaGraphThroughTheCApiRecordsAtEveryReplay()
    {
        var accelerator = (CudaAccelerator)TestAccelerators.Require("cuda");
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = Window, ExpertCapacity = 25, UtilizationDecay = 0.5f };
        using var direct = new ModelRoutingStats(options);
        const long validAt = Layers * Stride;
        using var producer = new PrimaryContextProducer(accelerator.DeviceId, validAt + 1);
        var stream = producer.CreateStream();
        var validTokens = producer.Pointer + (nint)(validAt * sizeof(int));
        var handle = Create("cuda", Layers, Experts, 25, Window, 0.5f);
        try
        {
            var rng = new Random(23);
            void Write(int step)
            {
                var ids = Enumerable.Range(0, Layers * Stride).Select(_ => rng.Next(-1, Experts + 1)).ToArray();
                var valid = step % 4 == 2 ? 0 : rng.Next(1, Tokens + 1);
                producer.Write(ids, 0);
                producer.Write([valid], validAt);
                direct.RecordStep(ids, valid, TopK, Stride);
            }

            int RecordOnStream() => ((delegate* unmanaged<long, IntPtr, int, int, int, int, long, long, IntPtr, IntPtr, IntPtr, IntPtr, int>)&NativeApi.ModelRecord)(
                handle, producer.Pointer, 0, Layers, Tokens, TopK, Stride, 0, validTokens, 0, 0, stream);

            // One record outside the graph first: the kernels' first launch is not captured.
            Write(0);
            Assert.Equal(Ok, RecordOnStream());
            PrimaryContextProducer.Synchronize(stream);
            using var graph = CudaGraph.Capture(producer.Context, stream, () => Assert.Equal(Ok, RecordOnStream()));
            for (var step = 1; step <= Steps + 3; step++)
            {
                Write(step);
                graph.Launch(stream);
                PrimaryContextProducer.Synchronize(stream);
            }

            Assert.Equal(direct.WindowLoad(), WindowLoad(handle));
            var (summary, window, sinceStart) = Summary(handle, null);
            var expected = direct.Summary();
            Assert.Equal((ulong)Steps + 4, summary.Steps);
            Assert.Equal(NativeModelBalance.From(expected, Experts), summary);
            Assert.Equal(expected.Window.Layers.Select(NativeLayerBalance.From), window);
            Assert.Equal(expected.SinceStart.Layers.Select(NativeLayerBalance.From), sinceStart);
            Assert.Equal(Ok, RecentWindowLoad(handle, 2, out var recentLoad, Layers * Experts));
            Assert.Equal(direct.WindowLoad(2), recentLoad);
            for (var l = 0; l < Layers; l++)
            {
                using var layer = direct.Layer(l);
                using var snapshot = layer.Snapshot();
                Assert.Equal(NativeSnapshot.From(snapshot), LayerSnapshot(handle, l));
            }
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }
}
