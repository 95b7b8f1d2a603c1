using System.CommandLine;
using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;
using MoeGpuStats.Kernels;
using MoeGpuStats.Kernels.Model;

namespace MoeGpuStats.Bench;

/// <summary>
/// <c>--model-probe [--out DIR]</c>: an experiment for the GPU machine, on the accelerator <c>MOEGS_ACCELERATOR</c>
/// names. (1) Launches the model kernel by hand on a model of 2 layers × 8 experts and prints the device state
/// after each launch (the step control, each layer's batch counts, blocks and window load), with and without a
/// device valid-token count, then a model of the library fed the same steps from the host against the managed
/// engine: where the model engine stops counting on an accelerator. On OpenCL it also writes the model kernel's
/// OpenCL C, as ILGPU generates it for that device, into DIR. (2) On CUDA, the host time of a step recorded
/// while another thread waits for a read behind about 2 ms of queued steps, for each way of waiting: a blocking
/// <see cref="ModelRoutingStats.Summary()"/>, a <see cref="ModelRoutingStats.BeginRead"/> then its wait, the
/// stream's synchronization alone, and a copy to pageable host memory alone.
/// </summary>
internal static class ModelEngineProbe
{
    private const int Layers = 2;
    private const int Experts = 8;
    private const int Tokens = 4;
    private const int TopK = 2;

    private static readonly Option<string> Out = QuickOptions.Path(
        new Option<string>("--out") { Description = "The folder the model kernel's OpenCL C is written to.", DefaultValueFactory = _ => "." },
        "the folder for the OpenCL C");

    public static QuickMode Mode { get; } = new(
        new Option<bool>("--model-probe"),
        "Launches the model kernel by hand on a small model and prints the device state after each launch; on CUDA, times a step beside a waiting read.",
        [Out],
        Run);

    private static int Run(ParseResult parsed)
    {
        var folder = parsed.GetRequiredValue(Out);
        using var context = Context.Create(builder => builder.Default().Profiling());
        var device = DeviceCheck.ChooseDevice(context);
        using var accelerator = device.CreateAccelerator(context);
        Console.WriteLine($"device: {accelerator.Name} ({accelerator.AcceleratorType}), warp {accelerator.WarpSize}, max group {accelerator.MaxNumThreadsPerGroup}, "
            + $"multiprocessors {accelerator.NumMultiprocessors}, record group size {RoutingRecordKernel.GroupSize(accelerator)}");
        if (device is CLDevice cl)
        {
            Console.WriteLine($"OpenCL: C {cl.CVersion}, CL {cl.CLStdVersion}, vendor {cl.Vendor}, generic address space {cl.Capabilities.GenericAddressSpace}, "
                + $"int64 atomics {cl.Capabilities.Int64_Atomics}, sub-groups {cl.Capabilities.SubGroups}");
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "model-kernel.cl"), KernelOpenCl.Generate(nameof(ModelRecordKernel), cl.Capabilities, cl.Vendor, cl.CVersion));
        }

        HandLaunches(accelerator, deviceValidTokens: false);
        HandLaunches(accelerator, deviceValidTokens: true);
        LibraryAgainstManaged(accelerator);
        if (accelerator.AcceleratorType == AcceleratorType.Cuda)
        {
            StepsDuringReads(accelerator);
        }

        return 0;
    }

    /// <summary>Layer l's ids: token t routes to experts (l + t) mod E and (l + t + 1) mod E.</summary>
    private static int[] Ids() =>
        [.. Enumerable.Range(0, Layers).SelectMany(l => Enumerable.Range(0, Tokens).SelectMany(t => new[] { (l + t) % Experts, (l + t + 1) % Experts }))];

    private static void HandLaunches(Accelerator accelerator, bool deviceValidTokens)
    {
        Console.WriteLine($"\n== hand launches, valid tokens {(deviceValidTokens ? "from a device int" : "all rows (empty view)")}");
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = 4 };
        using var stream = accelerator.CreateStream();
        var buffers = new List<MemoryBuffer>();
        ArrayView<T> Zeroed<T>(long length)
            where T : unmanaged
        {
            var buffer = accelerator.Allocate1D<T>(length);
            buffer.MemSetToZero(stream);
            buffers.Add(buffer);
            return buffer.View;
        }

        try
        {
            var perLayer = (long)Layers * Experts;
            var state = new ModelStateViews
            {
                Blocks = Zeroed<RoutingStateBlock>(Layers),
                BatchHistogram = Zeroed<ulong>(Layers * RoutingStateLayout.BatchHistogramLength),
                BatchInvalid = Zeroed<ulong>(Layers * RoutingStateLayout.BatchBuffers),
                BatchPaddedTokens = Zeroed<ulong>(Layers * RoutingStateLayout.BatchBuffers),
                UtilizationSums = Zeroed<double>(perLayer),
                TokenCounts = Zeroed<ulong>(perLayer),
                Utilization = Zeroed<float>(perLayer),
                DecayedUtilization = Zeroed<double>(perLayer),
                VarianceHistory = Zeroed<float>(Layers * RoutingStateLayout.VarianceWindow),
                WindowRing = Zeroed<uint>(options.WindowEntries),
                WindowLoad = Zeroed<ulong>(perLayer),
                Control = Zeroed<int>(ModelStateLayout.ControlLength),
                PendingLosses = Zeroed<float>(RoutingStateLayout.BatchBuffers * Layers * 2),
            };
            var ids = Zeroed<int>(Layers * Tokens * TopK);
            ids.CopyFromCPU(stream, Ids());
            var valid = Zeroed<int>(1);
            valid.CopyFromCPU(stream, new[] { Tokens });
            stream.Synchronize();
            Console.WriteLine($"ids on the device: [{string.Join(",", ReadBack(stream, ids))}]");

            var launcher = new ModelRecordLauncher(accelerator);
            var step = launcher.Step(new ModelStepArguments
            {
                Layers = Layers,
                Experts = Experts,
                Window = options.Window,
                SlotsPerExpert = options.LayerOptions.SlotsPerExpert,
                UtilizationDecay = -1f,
                Copies = 1,
                Tokens = Tokens,
                TopK = TopK,
                LayerStride = Tokens * TopK,
                TokenStride = TopK,
            });
            Console.WriteLine($"step: groups per layer {step.GroupsPerLayer}, copies {step.Copies}, grid {(step.GroupsPerLayer + 1) * Layers} groups");
            Print(stream, state, "before any launch");
            for (var i = 1; i <= 3; i++)
            {
                launcher.Launch(stream, new Int32Ids(ids), state, step, deviceValidTokens ? valid : default, default, default);
                stream.Synchronize();
                Print(stream, state, $"after step {i}");
            }

            launcher.Launch(stream, new Int32Ids(ids), state, ModelRecordLauncher.FoldOnly(step), default, default, default);
            stream.Synchronize();
            Print(stream, state, "after a fold-only launch");
        }
        finally
        {
            foreach (var buffer in buffers)
            {
                buffer.Dispose();
            }
        }
    }

    private static void Print(AcceleratorStream stream, ModelStateViews state, string when)
    {
        var control = ReadBack(stream, state.Control);
        var histogram = ReadBack(stream, state.BatchHistogram);
        var blocks = ReadBack(stream, state.Blocks);
        var load = ReadBack(stream, state.WindowLoad);
        Console.WriteLine($"{when}: control [{string.Join(",", control)}]");
        for (var l = 0; l < Layers; l++)
        {
            var first = l * RoutingStateLayout.BatchHistogramLength;
            var buffers = Enumerable.Range(0, RoutingStateLayout.BatchBuffers)
                .Select(b => histogram.AsSpan((int)(first + RoutingStateLayout.BufferStart(b)), (int)RoutingStateLayout.BufferLength).ToArray().Aggregate(0UL, (a, c) => a + c));
            Console.WriteLine($"  layer {l}: batch counts by buffer [{string.Join(",", buffers)}], routings {blocks[l].TotalRoutings}, tokens {blocks[l].TotalTokens}, "
                + $"experts {blocks[l].Experts}, window load [{string.Join(",", load.Skip(l * Experts).Take(Experts))}]");
        }
    }

    private static T[] ReadBack<T>(AcceleratorStream stream, ArrayView<T> view)
        where T : unmanaged
    {
        var host = new T[view.Length];
        view.CopyToCPU(stream, host);
        return host;
    }

    private static void LibraryAgainstManaged(Accelerator accelerator)
    {
        Console.WriteLine("\n== the library's model, 3 steps from the host, against the managed engine");
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = 4 };
        using var onDevice = ModelRoutingStats.OnDevice(accelerator, options);
        using var managed = new ModelRoutingStats(options);
        var ids = Ids();
        for (var i = 0; i < 3; i++)
        {
            onDevice.RecordStep(ids, Tokens, TopK);
            managed.RecordStep(ids, Tokens, TopK);
        }

        for (var l = 0; l < Layers; l++)
        {
            var device = onDevice.Layer(l).Snapshot();
            var expected = managed.Layer(l).Snapshot();
            Console.WriteLine($"  layer {l}: routings {device.TotalRoutings} (managed {expected.TotalRoutings}), tokens {device.TotalTokens} (managed {expected.TotalTokens})");
        }

        Console.WriteLine($"  window load {string.Join(",", onDevice.WindowLoad())} (managed {string.Join(",", managed.WindowLoad())})");
    }

    /// <summary>The median host time of a step recorded while another thread waits in each way, behind about 2 ms of queued steps.</summary>
    private static void StepsDuringReads(Accelerator accelerator)
    {
        Console.WriteLine("\n== a step recorded while another thread waits (58 x 256 x 8, 256 tokens; medians of 20, µs)");
        var shape = new ModelShape(58, 256, 8, 256);
        using var ids = accelerator.Allocate1D(shape.Ids());
        using var stream = accelerator.CreateStream();
        using var model = ModelRoutingStats.OnDevice(accelerator, new ModelRoutingStatsOptions { Layers = shape.Layers, Experts = shape.Experts }, stream);
        using var pageable = accelerator.Allocate1D<byte>(64 << 10);
        var host = new byte[pageable.Length];
        void Step() => model.RecordStep(ids.View, shape.Tokens, shape.TopK);
        for (var i = 0; i < 100; i++)
        {
            Step();
        }

        stream.Synchronize();
        Console.WriteLine($"  a step alone: {ModelDeviceCheck.HostMedian(20, Step):F1}");
        Console.WriteLine($"  during Summary(): {DuringWait(Step, () => model.Summary()):F1}");
        Console.WriteLine($"  during BeginRead() then its Wait(): {DuringWait(Step, () =>
        {
            using var read = model.BeginRead();
            read.Wait();
        }):F1}");
        Console.WriteLine($"  during the stream's Synchronize(): {DuringWait(Step, stream.Synchronize):F1}");
        Console.WriteLine($"  during a copy of 64 KiB to pageable memory: {DuringWait(Step, () => pageable.View.CopyToCPU(stream, host)):F1}");
        Console.WriteLine($"  during a Synchronize() then that copy: {DuringWait(Step, () => { stream.Synchronize(); pageable.View.CopyToCPU(stream, host); }):F1}");
    }

    /// <summary>
    /// Queues 200 steps (about 2 ms at 10 µs), starts <paramref name="wait"/> on another thread, gives it 200 µs to
    /// reach its wait, then times one step on this thread; the median of 20.
    /// </summary>
    private static double DuringWait(Action step, Action wait)
    {
        var times = new double[20];
        for (var i = 0; i < times.Length; i++)
        {
            for (var q = 0; q < 200; q++)
            {
                step();
            }

            using var started = new ManualResetEventSlim();
            var waiting = Task.Run(() =>
            {
                started.Set();
                wait();
            });
            started.Wait();
            var spin = Stopwatch.StartNew();
            while (spin.Elapsed.TotalMicroseconds < 200)
            {
                Thread.SpinWait(10);
            }

            var start = Stopwatch.GetTimestamp();
            step();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
            waiting.Wait();
        }

        return ModelDeviceCheck.Median(times);
    }
}
