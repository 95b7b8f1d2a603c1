using System.CommandLine;
using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Bench;

/// <summary>
/// <c>--model-check [--model-shapes 58x256x8x256,..] [--json FILE]</c>: the whole-model table on the best
/// accelerator (or <c>MOEGS_ACCELERATOR</c>), timed as <see cref="DeviceCheck"/> times records:
/// on the device between profiling markers (CUDA events), after warm-up, median of many. Per shape
/// (<see cref="ModelShape.Default"/>): one <see cref="ModelRoutingStats.RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float}, long)"/>
/// (one launch for every layer), the same ids as L single-layer records (L launches of
/// <see cref="DeviceRoutingStats"/>, one per layer, on the same stream), the step's read rate
/// against a device-to-device copy of the same bytes in the same run, a bare read of the same ids in one
/// launch (<see cref="RecordBreakdown.BareQuadReadMedian"/>: what a launch that counts nothing reaches against the
/// copy at the shape's size), and the host time to enqueue a step. The ids and checksum are model_baseline.py's, so its table
/// compares row by row, and scripts/targets.py reads both (this check's through <c>--json</c>, table <c>model</c>: <see cref="ModelRow"/>).
/// On CUDA a second table, <c>model_bounds</c>, times the step kernel as compiled against launch
/// bounds of 4, 6 and 8 groups per multiprocessor (<see cref="BoundsRow"/>).
/// </summary>
internal static class ModelDeviceCheck
{
    private static readonly Option<ModelShape[]> Shapes = QuickOptions.Shapes(ModelShape.Default);
    private static readonly Option<string?> Json = QuickOptions.Json();

    public static QuickMode Mode { get; } = new(
        new Option<bool>("--model-check"),
        "Times one whole-model step on the best accelerator (or MOEGS_ACCELERATOR) against L single-layer records, the copy of its ids and a bare read.",
        [Shapes, Json],
        Run);

    private static int Run(ParseResult parsed)
    {
        var shapes = parsed.GetRequiredValue(Shapes);
        using var context = Context.Create(builder => builder.Default().Profiling());
        var device = DeviceCheck.ChooseDevice(context);
        using var accelerator = device.CreateAccelerator(context);
        var onCpu = accelerator.AcceleratorType == AcceleratorType.CPU;
        var report = new CheckReport("model-check", accelerator, parsed.GetValue(Json));
        Console.WriteLine($"device: {accelerator.Name} ({accelerator.AcceleratorType}); whole-model steps, ids [layers, tokens, k] packed, the baseline's skewed data over the whole step");
        WarmUp(accelerator, onCpu);
        var emptyLaunch = DeviceCheck.EmptyLaunchMedian(accelerator, onCpu);
        report.Set("empty_launch_us", emptyLaunch);
        Console.WriteLine($"An empty kernel between the same markers: {emptyLaunch:F1} µs (the floor under one launch; L single-layer records are L launches).");
        Console.WriteLine();
        Console.WriteLine("Whole model: one RecordStep (one launch, every layer) against L single-layer records of the same ids (L launches, one stream); device medians between markers; read GB/s is the step's 4 × ids bytes per second; the copy counts bytes read plus written, as the device check's first table.");
        var table = report.Table<ModelRow>(
            "model",
            new("L", r => $"{r.Layers}"),
            new("E", r => $"{r.Experts}"),
            new("k", r => $"{r.TopK}"),
            new("tokens", r => $"{r.Tokens}"),
            new("step ids", r => $"{r.StepIds}"),
            new("step median", r => $"{r.StepUs:F1} µs"),
            new("step back to back", r => $"{r.StepBackToBackUs:F1} µs"),
            new("L single-layer records", r => $"{r.LayerRecordsUs:F1} µs"),
            new("records / step", r => $"{r.LayerRecordsPerStep:F1}x"),
            new("step read GB/s", r => $"{r.StepReadGbs:F1}"),
            new("d2d copy GB/s", r => $"{r.CopyGbs:F1}"),
            new("read/copy", r => $"{r.ReadPerCopy:P0}"),
            new("bare read of the ids", r => $"{r.BareReadUs:F1} µs"),
            new("its read/copy", r => $"{r.BareReadPerCopy:P0}"),
            new("host enqueue per step", r => $"{r.HostEnqueueUs:F1} µs"),
            new("Summary() read", r => $"{r.SummaryUs:F0} µs"),
            new("metrics reading", r => $"{r.ReadingUs:F0} µs"),
            new("step during a read", r => $"{r.StepDuringReadUs:F1} µs"),
            new("that read", r => $"{r.ReadBehindQueueUs:F0} µs"),
            new("BeginRead() behind the queue", r => $"{r.BeginReadUs:F1} µs"),
            new("its summary", r => r.PendingSummaryEqual ? "equal" : "DIFFERS"),
            new("[tokens, layers, k] step", r => $"{r.TokensFirstUs:F1} µs"),
            new("its checksum", r => r.TokensFirstChecksum == r.StepChecksum ? "equal" : $"DIFFERS: {r.TokensFirstChecksum}"),
            new("step checksum", r => $"{r.StepChecksum}"),
            new("layers checksum", r => r.LayersChecksum == r.StepChecksum ? "equal" : $"DIFFERS: {r.LayersChecksum}"));
        foreach (var shape in shapes)
        {
            table.Add(Row(accelerator, shape, onCpu));
        }

        Console.WriteLine();
        if (CudaLaunchBounds.AppliesTo(accelerator))
        {
            Console.WriteLine($"The step kernel as compiled (the driver's occupancy; docs/performance.md gives ptxas' registers) against launch bounds of {string.Join(", ", LaunchBounds)} groups (fewer registers, some spills; docs/performance.md); device medians between markers.");
            var bounds = report.Table<BoundsRow>(
                "model_bounds",
                new("L", r => $"{r.Layers}"),
                new("E", r => $"{r.Experts}"),
                new("k", r => $"{r.TopK}"),
                new("tokens", r => $"{r.Tokens}"),
                new("as compiled", r => $"{r.CompiledUs:F1} µs"),
                new("bounds: groups → µs", r => string.Join(", ", r.BoundedUs.Select((us, i) => $"{LaunchBounds[i]}: {us:F1}"))),
                new("checksums", r => r.ChecksumsEqual ? "equal" : "DIFFER"));
            foreach (var shape in ModelShape.ParseList(BoundsShapes))
            {
                bounds.Add(Bounds(accelerator, shape));
            }
        }
        else
        {
            Console.WriteLine("The step kernel's launch bounds apply on CUDA only: not compared here.");
        }

        report.Complete();
        return 0;
    }

    /// <summary>The groups per multiprocessor the bounded step kernels are compiled for.</summary>
    internal static readonly int[] LaunchBounds = [4, 6, 8];

    /// <summary>Decode at one and 256 tokens, prefill, Mixtral: where the grid is small, full, and one wave.</summary>
    private const string BoundsShapes = "58x256x8x1,58x256x8x256,58x256x8x16384,32x8x2x256";

    /// <summary>The step's device median as compiled and under each of <see cref="LaunchBounds"/>, and whether all counted alike.</summary>
    private static BoundsRow Bounds(Accelerator accelerator, ModelShape shape)
    {
        using var ids = accelerator.Allocate1D(shape.Ids());
        using var stream = accelerator.CreateStream();
        var reps = shape.StepIds >= 1 << 24 ? 200 : 1000;
        var times = new List<double>();
        var checksums = new HashSet<ulong>();
        foreach (var bound in LaunchBounds.Prepend(0))
        {
            using var model = new ModelRoutingStats(new DeviceModelEngine(accelerator, Options(shape), stream, owned: null, bound));
            void Step() => model.RecordStep(ids.View, shape.Tokens, shape.TopK);
            for (var i = 0; i < 3; i++)
            {
                Step();
            }

            stream.Synchronize();
            times.Add(DeviceCheck.Median(reps, stream, Step));
            model.Reset();
            Step();
            checksums.Add(ModelShape.Checksum(model.WindowLoad()));
        }

        return new BoundsRow(shape.Layers, shape.Experts, shape.TopK, shape.Tokens, times[0], [.. times.Skip(1)], checksums.Count == 1);
    }

    /// <summary>About a second of timed steps first, as DeviceCheck.WarmUp (clocks, the first markers).</summary>
    private static void WarmUp(Accelerator accelerator, bool onCpu)
    {
        var shape = new ModelShape(58, 256, 8, 256);
        using var ids = accelerator.Allocate1D(shape.Ids());
        using var stream = accelerator.CreateStream();
        using var model = ModelRoutingStats.OnDevice(accelerator, Options(shape), stream);
        var clock = Stopwatch.StartNew();
        do
        {
            DeviceCheck.Median(onCpu ? 2 : 1000, stream, () => model.RecordStep(ids.View, shape.Tokens, shape.TopK));
        }
        while (clock.Elapsed < TimeSpan.FromSeconds(1));
    }

    private static ModelRow Row(Accelerator accelerator, ModelShape shape, bool onCpu)
    {
        var host = shape.Ids();
        using var ids = accelerator.Allocate1D(host);
        using var tokensFirst = accelerator.Allocate1D(shape.TokensFirst(host));
        using var copyTarget = accelerator.Allocate1D<int>(shape.StepIds);
        using var stream = accelerator.CreateStream();
        var engine = new DeviceModelEngine(accelerator, Options(shape), stream);
        using var model = new ModelRoutingStats(engine);
        var layers = Enumerable.Range(0, shape.Layers).Select(_ => new DeviceRoutingStats(accelerator, Options(shape).LayerOptions, stream)).ToArray();
        var views = Enumerable.Range(0, shape.Layers).Select(l => ids.View.SubView(l * shape.LayerIds, shape.LayerIds)).ToArray();
        try
        {
            void Step() => model.RecordStep(ids.View, shape.Tokens, shape.TopK);
            void TokensFirstStep() => model.RecordStep(tokensFirst.View, shape.Tokens, shape.TopK, layerStride: shape.TopK, tokenStride: shape.Layers * shape.TopK);
            void SingleLayerRecords()
            {
                for (var l = 0; l < layers.Length; l++)
                {
                    layers[l].RecordRouting(views[l], shape.Tokens, shape.TopK);
                }
            }

            var large = shape.StepIds >= 1 << 24;
            var reps = onCpu ? 3 : large ? 200 : 1000;
            for (var i = 0; i < 3; i++)
            {
                Step();
                SingleLayerRecords();
            }

            stream.Synchronize();
            var step = DeviceCheck.Median(reps, stream, Step);
            var records = DeviceCheck.Median(Math.Max(3, reps / 5), stream, SingleLayerRecords);
            var copy = DeviceCheck.Median(Math.Max(3, reps / 5), stream, () => copyTarget.View.CopyFrom(stream, ids.View));
            var bareRead = RecordBreakdown.BareQuadReadMedian(accelerator, stream, ids.View, shape.Experts, Math.Max(3, reps / 5));
            TokensFirstStep();
            var interleaved = DeviceCheck.Median(Math.Max(3, reps / 5), stream, TokensFirstStep);

            var start = stream.AddProfilingMarker();
            for (var i = 0; i < reps; i++)
            {
                Step();
            }

            var end = stream.AddProfilingMarker();
            end.Synchronize();
            var backToBack = (end - start).TotalMicroseconds / reps;
            var enqueue = HostMedian(onCpu ? 3 : 200, Step);
            stream.Synchronize();

            // A read's whole wall time, waits included: the fold, each layer's sort for its Gini and top share, the copies back.
            var summary = HostMedian(onCpu ? 3 : 50, () => model.Summary());

            // What a metrics collection reads, every option on (the newest 10 steps, totals, window load, counts): one wait.
            var reading = HostMedian(onCpu ? 3 : 50, () => model.Read(new() { RecentSteps = model.Options.Window, AlsoRecentSteps = Math.Min(10, model.Options.Window), Totals = true, WindowLoad = true, TokenCounts = true }));

            var (duringRead, behindQueue) = StepDuringRead(engine, model, Step, onCpu ? 1 : 20, QueuedSteps(step));
            var (beginRead, pendingEqual) = BeginReadBehindQueue(model, Step, onCpu ? 1 : 20, QueuedSteps(step));

            // One step into a cleared model, one record into each cleared layer: the same counts, the same checksum.
            model.Reset();
            TokensFirstStep();
            var tokensFirstChecksum = ModelShape.Checksum(model.WindowLoad());
            model.Reset();
            Step();
            var stepChecksum = ModelShape.Checksum(model.WindowLoad());
            foreach (var layer in layers)
            {
                layer.Reset();
            }

            SingleLayerRecords();
            var counts = new List<ulong>();
            foreach (var layer in layers)
            {
                using var snapshot = layer.Snapshot();
                counts.AddRange(snapshot.ExpertTokenCounts);
            }

            var layersChecksum = ModelShape.Checksum(counts);
            var readGbs = shape.StepIds * 4 / (step * 1e3);
            var copyGbs = shape.StepIds * 8 / (copy * 1e3);
            return new ModelRow(
                shape.Layers, shape.Experts, shape.TopK, shape.Tokens, shape.StepIds, step, backToBack, records, records / step,
                readGbs, copyGbs, readGbs / copyGbs, bareRead, copy / bareRead / 2, enqueue, summary, reading, duringRead, behindQueue, beginRead, pendingEqual, interleaved, stepChecksum, layersChecksum, tokensFirstChecksum);
        }
        finally
        {
            foreach (var layer in layers)
            {
                layer.Dispose();
            }
        }
    }

    /// <summary>Steps queued ahead of the read in <see cref="StepDuringRead"/>: about 2 ms of device time at <paramref name="stepUs"/> a step (1 to 1,000).</summary>
    private static int QueuedSteps(double stepUs) => (int)Math.Clamp(2000 / Math.Max(stepUs, 1), 1, 1000);

    /// <summary>
    /// Medians (µs) of the host time of a step recorded on this thread while a <see cref="ModelRoutingStats.Summary()"/>
    /// on another thread waits for its copy back behind <paramref name="queued"/> steps, and of that read's wall
    /// time: what a server's forward pass waits for a scrape (the read's enqueueing, not its copy, which
    /// waits for the queue with the model's lock released).
    /// </summary>
    private static (double StepUs, double ReadUs) StepDuringRead(DeviceModelEngine engine, ModelRoutingStats model, Action step, int reps, int queued)
    {
        var steps = new double[reps];
        var reads = new double[reps];
        using var copying = new ManualResetEventSlim();
        engine.Reader.BeforeCopy = copying.Set;
        try
        {
            for (var i = 0; i < reps; i++)
            {
                for (var q = 0; q < queued; q++)
                {
                    step();
                }

                copying.Reset();
                var start = Stopwatch.GetTimestamp();
                var read = Task.Run(() => model.Summary());

                // A read that fails before its copy rethrows here rather than leaving this loop waiting.
                while (!copying.Wait(10))
                {
                    if (read.IsCompleted)
                    {
                        read.Wait();
                        throw new InvalidOperationException("Summary() returned without a copy back to time a step against.");
                    }
                }

                var before = Stopwatch.GetTimestamp();
                step();
                steps[i] = Stopwatch.GetElapsedTime(before).TotalMicroseconds;
                read.Wait();
                reads[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
            }
        }
        finally
        {
            engine.Reader.BeforeCopy = null;
        }

        return (Median(steps), Median(reads));
    }

    /// <summary>
    /// Median host time (µs) of <see cref="ModelRoutingStats.BeginRead"/> with <paramref name="queued"/> steps ahead
    /// of it on the stream (the page-locked buffer from the model's pool after the first reads), what a server's loop spends to begin a read that
    /// it polls later; and whether every such read's summary equals the blocking <see cref="ModelRoutingStats.Summary()"/> of the same steps.
    /// </summary>
    private static (double BeginUs, bool SummariesEqual) BeginReadBehindQueue(ModelRoutingStats model, Action step, int reps, int queued)
    {
        var times = new double[reps];
        var equal = true;
        for (var i = 0; i < reps; i++)
        {
            for (var q = 0; q < queued; q++)
            {
                step();
            }

            var start = Stopwatch.GetTimestamp();
            using var read = model.BeginRead();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
            equal &= read.Summary == model.Summary();
        }

        return (Median(times), equal);
    }

    /// <summary>Median host wall time in µs of a call: an enqueue's, or a read's with its waits.</summary>
    internal static double HostMedian(int reps, Action call)
    {
        var times = new double[reps];
        for (var i = 0; i < reps; i++)
        {
            var start = Stopwatch.GetTimestamp();
            call();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }

        return Median(times);
    }

    /// <summary>The median of <paramref name="times"/> (the upper one of an even count), sorting them in place.</summary>
    internal static double Median(double[] times)
    {
        Array.Sort(times);
        return times[times.Length / 2];
    }

    private static ModelRoutingStatsOptions Options(ModelShape shape) => new() { Layers = shape.Layers, Experts = shape.Experts };

    /// <summary>A shape's step as compiled and under each launch bound (µs), and whether every variant's one step counted the same.</summary>
    private sealed record BoundsRow(int Layers, int Experts, int TopK, int Tokens, double CompiledUs, double[] BoundedUs, bool ChecksumsEqual);

    /// <summary>
    /// A shape's row: the step, back to back, the L single-layer records of the same ids, the step's
    /// read rate against the copy of the same bytes (read plus written), a bare read of the step's ids in one launch
    /// (no counting: what a launch that only reads the ids reaches) and its rate against the copy, the host time to enqueue a
    /// step, a read, a step recorded while a read waits behind queued steps and that read, a read begun without
    /// waiting behind as many steps (and whether its summary equals the blocking read's), the step of the
    /// same ids laid out <c>[tokens, layers, k]</c>; the checksums of one
    /// step, of the L records and of the tokens-first step, equal when they counted the same.
    /// </summary>
    private sealed record ModelRow(
        int Layers, int Experts, int TopK, int Tokens, long StepIds, double StepUs, double StepBackToBackUs, double LayerRecordsUs, double LayerRecordsPerStep,
        double StepReadGbs, double CopyGbs, double ReadPerCopy, double BareReadUs, double BareReadPerCopy, double HostEnqueueUs, double SummaryUs, double ReadingUs,
        double StepDuringReadUs, double ReadBehindQueueUs, double BeginReadUs, bool PendingSummaryEqual, double TokensFirstUs,
        ulong StepChecksum, ulong LayersChecksum, ulong TokensFirstChecksum);
}
