using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Bench;

/// <summary>
/// <c>--model-check [--model-shapes 58x256x8x256,..]</c>: the whole-model table on the best
/// accelerator (or <c>MOEGS_ACCELERATOR</c>), timed as <see cref="DeviceCheck"/> times records:
/// on the device between profiling markers (CUDA events), after warm-up, median of many. Per shape
/// (<see cref="ModelShape.Default"/>): one <see cref="ModelRoutingStats.RecordStep(ArrayView{int}, int, int, long, ArrayView{int}, ArrayView{float}, ArrayView{float})"/>
/// (one launch for every layer), the same ids as L single-layer records (L launches of
/// <see cref="DeviceRoutingStats"/>, one per layer, on the same stream), the step's read rate
/// against a device-to-device copy of the same bytes in the same run, and the host time to enqueue
/// a step. The ids and checksum are model_baseline.py's, so its table compares row by row, and
/// scripts/targets.py reads both.
/// </summary>
internal static class ModelDeviceCheck
{
    /// <summary>The table's first header cells, which scripts/targets.py looks for.</summary>
    public const string Header =
        "| L | E | k | tokens | step ids | step median | step back to back | L single-layer records | records / step | step read GB/s | d2d copy GB/s | read/copy | host enqueue per step | step checksum | layers checksum |";

    public static int Run(string[] args)
    {
        var position = Array.IndexOf(args, "--model-shapes");
        var shapes = ModelShape.ParseList(position >= 0 && position + 1 < args.Length ? args[position + 1] : ModelShape.Default);
        using var context = Context.Create(builder => builder.Default().Profiling());
        var device = DeviceCheck.ChooseDevice(context);
        using var accelerator = device.CreateAccelerator(context);
        var onCpu = accelerator.AcceleratorType == AcceleratorType.CPU;
        Console.WriteLine($"device: {accelerator.Name} ({accelerator.AcceleratorType}); whole-model steps, ids [layers, tokens, k] packed, the baseline's skewed data over the whole step");
        WarmUp(accelerator, onCpu);
        Console.WriteLine($"An empty kernel between the same markers: {DeviceCheck.EmptyLaunchMedian(accelerator, onCpu):F1} µs (the floor under one launch; L single-layer records are L launches).");
        Console.WriteLine();
        Console.WriteLine("Whole model: one RecordStep (one launch, every layer) against L single-layer records of the same ids (L launches, one stream); device medians between markers; read GB/s is the step's 4 × ids bytes per second; the copy counts bytes read plus written, as the device check's first table.");
        Console.WriteLine(Header);
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var shape in shapes)
        {
            Row(accelerator, shape, onCpu);
        }

        return 0;
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

    private static void Row(Accelerator accelerator, ModelShape shape, bool onCpu)
    {
        var host = shape.Ids();
        using var ids = accelerator.Allocate1D(host);
        using var copyTarget = accelerator.Allocate1D<int>(shape.StepIds);
        using var stream = accelerator.CreateStream();
        using var model = ModelRoutingStats.OnDevice(accelerator, Options(shape), stream);
        var layers = Enumerable.Range(0, shape.Layers).Select(_ => new DeviceRoutingStats(accelerator, Options(shape).LayerOptions, stream)).ToArray();
        var views = Enumerable.Range(0, shape.Layers).Select(l => ids.View.SubView(l * shape.LayerIds, shape.LayerIds)).ToArray();
        try
        {
            void Step() => model.RecordStep(ids.View, shape.Tokens, shape.TopK);
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

            // One step into a cleared model, one record into each cleared layer: the same counts, the same checksum.
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
            Console.WriteLine(
                $"| {shape.Layers} | {shape.Experts} | {shape.TopK} | {shape.Tokens} | {shape.StepIds} | {step:F1} µs | {backToBack:F1} µs | {records:F1} µs | {records / step:F1}x | {readGbs:F1} | {copyGbs:F1} | {readGbs / copyGbs:P0} | {enqueue:F1} µs | {stepChecksum} | {(layersChecksum == stepChecksum ? "equal" : $"DIFFERS: {layersChecksum}")} |");
        }
        finally
        {
            foreach (var layer in layers)
            {
                layer.Dispose();
            }
        }
    }

    /// <summary>Median host time in µs of a call that only enqueues (no wait inside).</summary>
    private static double HostMedian(int reps, Action call)
    {
        var times = new double[reps];
        for (var i = 0; i < reps; i++)
        {
            var start = Stopwatch.GetTimestamp();
            call();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }

        Array.Sort(times);
        return times[reps / 2];
    }

    private static ModelRoutingStatsOptions Options(ModelShape shape) => new() { Layers = shape.Layers, Experts = shape.Experts };
}
