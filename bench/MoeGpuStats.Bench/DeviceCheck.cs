using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Bench.Candidates;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;
using MoeGpuStats.Lab;

namespace MoeGpuStats.Bench;

/// <summary>
/// <c>--device-check [--experts E] [--sizes a,b,..] [--skew-size n] [--ids-per-bin a,b,..] [--groups-per-copy a,b,..] [--sweep-experts a,b,..]</c>: one table in a few minutes on the best
/// accelerator (or <c>MOEGS_ACCELERATOR</c>). Each record is timed on the device with profiling
/// markers after warm-up, median of many; the device-to-device copy bandwidth is measured in the
/// same run; the managed path (copy ids to the host, then the managed loop) is timed on the host.
/// The data and checksum are those of torch_baseline.py, so its table compares row by row.
/// </summary>
internal static class DeviceCheck
{
    /// <summary>The device <c>MOEGS_ACCELERATOR</c> names, else CUDA, then OpenCL, then the CPU accelerator.</summary>
    public static ILGPU.Runtime.Device ChooseDevice(Context context)
    {
        var wanted = Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable)?.ToLowerInvariant();
        return context.Devices
            .Where(d => wanted is null or "" || d.AcceleratorType.ToString().Equals(wanted, StringComparison.OrdinalIgnoreCase))
            .OrderBy(d => d.AcceleratorType switch { AcceleratorType.Cuda => 0, AcceleratorType.OpenCL => 1, _ => 2 })
            .First();
    }

    public static int Run(string[] args)
    {
        var experts = Option(args, "--experts", 256);
        var sizes = OptionText(args, "--sizes", "32768,1048576,16777216,134217728").Split(',').Select(long.Parse).ToArray();
        using var context = Context.Create(builder => builder.Default().Profiling());
        var device = ChooseDevice(context);
        using var accelerator = device.CreateAccelerator(context);
        var onCpu = accelerator.AcceleratorType == AcceleratorType.CPU;
        Console.WriteLine($"device: {accelerator.Name} ({accelerator.AcceleratorType}), experts={experts}, k=8 layout, one kernel launch per record, launch bounds {(CudaLaunchBounds.AppliesTo(accelerator) ? "applied" : "not applied")}");
        WarmUp(accelerator, experts, onCpu);
        Console.WriteLine($"An empty kernel between the same markers: {EmptyLaunchMedian(accelerator, onCpu):F1} µs (the floor under any one-launch record).");
        Console.WriteLine("| ids | record median | record read GB/s | d2d copy GB/s | read/copy | back-to-back per record | copy-to-host + managed | managed/device | checksum |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        var breakdowns = sizes.Select(length => Row(accelerator, experts, length, onCpu)).ToArray();
        RecordBreakdown.Print(breakdowns);

        var skewLength = Option(args, "--skew-size", 1 << 24);
        var policy = RecordKernelPolicy.For(accelerator);
        var countings = Enum.GetValues<HistogramCounting>()
            .Where(c => Supports(accelerator, c))
            .Select(c => (Name: c.ToString(), Create: (Func<Accelerator, RoutingRecordLauncher>)(a => RoutingRecordKernel.Create(a, policy with { Counting = c }))))
            .Concat(CandidateCounting.All.Where(c => Times(accelerator, c)).Select(c => (c.Name, Create: (Func<Accelerator, RoutingRecordLauncher>)c.CreateDefault)))
            .ToArray();
        Console.WriteLine();
        Console.WriteLine($"Skewed loads, {skewLength} ids: many threads add to one bin at once. Record median, read GB/s and time against the uniform load, per histogram counting (default here {policy.Counting}).");
        Console.WriteLine($"| load |{string.Concat(countings.Select(c => $" {c.Name} | GB/s | / uniform |"))} checksum |");
        Console.WriteLine($"| --- |{string.Concat(countings.Select(_ => " --- | --- | --- |"))} --- |");
        var uniform = new double[countings.Length];
        foreach (var (load, host) in SkewedLoads(skewLength, experts))
        {
            var cells = new List<string>();
            var checksums = new HashSet<ulong>();
            for (var c = 0; c < countings.Length; c++)
            {
                using var ids = accelerator.Allocate1D(host);
                var (micros, checksum) = RecordMedian(accelerator, experts, ids.View, onCpu, countings[c].Create);
                uniform[c] = load == "uniform" ? micros : uniform[c];
                checksums.Add(checksum);
                cells.Add($" {micros:F1} µs | {skewLength * 4 / (micros * 1e3):F1} | {micros / uniform[c]:F2}x |");
            }

            // One checksum when every counting gave the same counts; a difference shows them all.
            Console.WriteLine($"| {load} |{string.Concat(cells)} {string.Join(" ≠ ", checksums)} |");
        }

        PaddingTable(accelerator, experts, sizes, onCpu);
        Queries(accelerator, experts);
        QueryLaunches(accelerator, [.. new[] { 64, experts, 1024, RoutingStateLayout.MaxExperts }.Distinct().Order()], onCpu);

        // Each extra group flushes up to E counts, so at thousands of experts fewer, longer groups
        // should pay: at 4,096 experts and 16 Mi ids, 256 ids per thread (a quarter of the groups)
        // took 50.1 µs against 85.4 on an H100 (a4037c7). 0 is the rule before that.
        var perBin = OptionText(args, "--ids-per-bin", "0,4,8,16,32,64").Split(',').Select(int.Parse).ToArray();
        var sweepExperts = OptionText(args, "--sweep-experts", $"{experts},1024,{RoutingStateLayout.MaxExperts}").Split(',').Select(int.Parse).Distinct();
        Console.WriteLine();
        Console.WriteLine($"Grid rule: the fewest ids per expert a group takes before another group (default {policy.IdsPerBin}; 0: no such bound), with at least {policy.IdsPerThread} ids per thread (a small batch first gets a group per multiprocessor, down to {RecordKernelPolicy.FewestIdsPerThread}); record median in µs.");
        Console.WriteLine($"| E | ids | {string.Join(" | ", perBin)} | checksum |");
        Console.WriteLine($"| --- | --- |{string.Concat(perBin.Select(_ => " --- |"))} --- |");
        foreach (var sweepE in sweepExperts)
        {
            foreach (var length in sizes.Where(n => n >= 1 << 20))
            {
                var host = RoutingIds.Skewed(length, sweepE);
                var runs = perBin.Select(n => RecordMedian(accelerator, sweepE, host, onCpu, policy with { IdsPerBin = n })).ToArray();
                var checksums = string.Join(" ≠ ", runs.Select(run => run.Checksum).Distinct());
                Console.WriteLine($"| {sweepE} | {length} | {string.Join(" | ", runs.Select(run => run.Micros.ToString("F1")))} | {checksums} |");
            }
        }

        // Every group adds up to E counts into the record's batch buffer at the end of the record; spread
        // over copies, those atomics meet on fewer of the same addresses, and the fold sums the copies.
        // Buffers of 16,384 counts lost at 1,024 and 4,096 experts; back to 4,096.
        var perCopy = OptionText(args, "--groups-per-copy", "0,256,128,64,32").Split(',').Select(int.Parse).ToArray();
        Console.WriteLine();
        Console.WriteLine($"Flush copies: counting groups per copy of the batch histogram (default {policy.GroupsPerCopy}; 0: one copy; at most {RoutingStateLayout.MaxCopies} copies and {RoutingStateLayout.BufferLength} / E), record median in µs.");
        Console.WriteLine($"| E | ids | {string.Join(" | ", perCopy.Select(n => n == 0 ? "one copy" : n.ToString()))} | checksum |");
        Console.WriteLine($"| --- | --- |{string.Concat(perCopy.Select(_ => " --- |"))} --- |");
        foreach (var sweepE in new[] { experts, 1024, RoutingStateLayout.MaxExperts }.Distinct())
        {
            foreach (var length in sizes)
            {
                var host = RoutingIds.Skewed(length, sweepE);
                var runs = perCopy.Select(n => RecordMedian(accelerator, sweepE, host, onCpu, policy with { GroupsPerCopy = n == 0 ? int.MaxValue : n })).ToArray();
                var checksums = string.Join(" ≠ ", runs.Select(run => run.Checksum).Distinct());
                Console.WriteLine($"| {sweepE} | {length} | {string.Join(" | ", runs.Select(run => run.Micros.ToString("F1")))} | {checksums} |");
            }
        }

        // Last: a candidate kernel that fails on a device takes only this table with it.
        CandidateTable.Print(accelerator, experts, sizes, skewLength, onCpu);
        return 0;
    }

    /// <summary>
    /// About a second of timed records before anything is reported: in two of the three device calls
    /// at commit 45e8339 the first table's 32 Ki row read 9.4 and 9.7 µs where the same record read
    /// 6.8–7.1 µs later in the same process (clocks, or the first profiling markers).
    /// </summary>
    private static void WarmUp(Accelerator accelerator, int experts, bool onCpu)
    {
        using var ids = accelerator.Allocate1D(RoutingIds.Skewed(1 << 15, experts));
        using var engine = new DeviceRoutingStats(accelerator, new RoutingStatsOptions { Experts = experts });
        var clock = Stopwatch.StartNew();
        do
        {
            Median(onCpu ? 5 : 1000, engine.Stream, () => engine.RecordRouting(ids.View, 1 << 12, 8));
        }
        while (clock.Elapsed < TimeSpan.FromSeconds(1));
    }

    /// <summary>The median device time of a launch of one warp that does nothing.</summary>
    internal static double EmptyLaunchMedian(Accelerator accelerator, bool onCpu)
    {
        var empty = accelerator.LoadKernel<ArrayView<int>>(EmptyKernel);
        using var target = accelerator.Allocate1D<int>(1);
        using var stream = accelerator.CreateStream();
        empty(stream, new KernelConfig(1, accelerator.WarpSize), target.View);
        stream.Synchronize();
        return Median(onCpu ? 5 : 1000, stream, () => empty(stream, new KernelConfig(1, accelerator.WarpSize), target.View));
    }

    private static void EmptyKernel(ArrayView<int> unused)
    {
    }

    /// <summary>Reads, timed on the host because each one waits for the device: median of 200.</summary>
    private static void Queries(Accelerator accelerator, int experts)
    {
        using var ids = accelerator.Allocate1D(RoutingIds.Skewed(1 << 15, experts));
        using var engine = new DeviceRoutingStats(accelerator, new RoutingStatsOptions { Experts = experts });
        for (var i = 0; i < 200; i++)
        {
            engine.RecordRouting(ids.View, 1 << 12, 8);
        }

        Console.WriteLine();
        Console.WriteLine($"Host time per call after 200 records of 32 Ki ids, E = {experts} (each read is a launch or copy and one wait):");
        Console.WriteLine("| call | median |");
        Console.WriteLine("| --- | --- |");
        Console.WriteLine($"| RecordRouting (host time to enqueue, no wait) | {HostMedian(() => engine.RecordRouting(ids.View, 1 << 12, 8)):F1} µs |");
        Console.WriteLine($"| UtilizationCv() | {HostMedian(() => engine.UtilizationCv()):F1} µs |");
        Console.WriteLine($"| RecentLoadVarianceTrend(100) | {HostMedian(() => engine.RecentLoadVarianceTrend(100)):F1} µs |");
        Console.WriteLine($"| Snapshot() | {HostMedian(() => engine.Snapshot().Dispose()):F1} µs |");
        Console.WriteLine($"| RecordRouting then UtilizationCv() (the read first folds the record: one more launch) | {HostMedian(() => { engine.RecordRouting(ids.View, 1 << 12, 8); engine.UtilizationCv(); }):F1} µs |");
    }

    /// <summary>
    /// A read's device time by expert count: the query launch and its 36-byte copy between profiling
    /// markers, median of 200, next to the host time of the same call (which adds the wait).
    /// </summary>
    private static void QueryLaunches(Accelerator accelerator, int[] expertCounts, bool onCpu)
    {
        Console.WriteLine();
        Console.WriteLine("UtilizationCv() by expert count after 1,000 records (the variance ring full): device time between markers, and host time.");
        Console.WriteLine("| E | device | host |");
        Console.WriteLine("| --- | --- | --- |");
        foreach (var experts in expertCounts)
        {
            using var ids = accelerator.Allocate1D(RoutingIds.Skewed(1 << 15, experts));
            using var engine = new DeviceRoutingStats(accelerator, new RoutingStatsOptions { Experts = experts });
            for (var i = 0; i < RoutingStateLayout.VarianceWindow; i++)
            {
                engine.RecordRouting(ids.View, 1 << 12, 8);
            }

            engine.Stream.Synchronize();
            var device = Median(onCpu ? 5 : 200, engine.Stream, () => engine.UtilizationCv());
            Console.WriteLine($"| {experts} | {device:F1} µs | {HostMedian(() => engine.UtilizationCv()):F1} µs |");
        }
    }

    private static double HostMedian(Action read)
    {
        var times = new double[200];
        for (var i = 0; i < times.Length; i++)
        {
            var start = Stopwatch.GetTimestamp();
            read();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }

        Array.Sort(times);
        return times[times.Length / 2];
    }

    /// <summary>
    /// What padding (−1 ids) costs a record, with the accelerator's default counting: a batch whose last
    /// 5 % of tokens are padded (a server's fixed-size batch), and one with every 16th slot empty (every
    /// group then reads its share a second time, to tell padding from invalid ids): the worst case.
    /// Batches without padding take the kernel's unchanged path, so the first column is the plain record.
    /// </summary>
    private static void PaddingTable(Accelerator accelerator, int experts, long[] sizes, bool onCpu)
    {
        Console.WriteLine();
        Console.WriteLine($"Padding: record median in µs of the same batch (k = 8) without padding, with its last 5 % of tokens padded (all 8 ids −1), and with every 16th slot −1; the ratios to no padding. Checksums differ by design (padding is not counted).");
        Console.WriteLine("| ids | no padding | last 5 % of tokens padded | padded / none | every 16th slot empty | empty / none |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
        foreach (var length in sizes)
        {
            var plain = RoutingIds.Skewed(length, experts);
            var tail = (int[])plain.Clone();
            Array.Fill(tail, -1, (int)(length / 8 * 95 / 100 * 8), (int)(length - length / 8 * 95 / 100 * 8));
            var scattered = (int[])plain.Clone();
            for (var i = 5L; i < length; i += 16)
            {
                scattered[i] = -1;
            }

            var none = RecordMedian(accelerator, experts, plain, onCpu).Micros;
            var padded = RecordMedian(accelerator, experts, tail, onCpu).Micros;
            var holes = RecordMedian(accelerator, experts, scattered, onCpu).Micros;
            Console.WriteLine($"| {length} | {none:F1} | {padded:F1} | {padded / none:F2}x | {holes:F1} | {holes / none:F2}x |");
        }
    }

    /// <summary>The loads of the skew table, first the uniform one the others are compared with.</summary>
    private static IEnumerable<(string Load, int[] Ids)> SkewedLoads(long length, int experts)
    {
        yield return ("uniform", RoutingIds.Hot(length, experts, 0.0));
        yield return ("k = 8 collapsed, same order", RoutingIds.Collapsed(length, 8, orderVaries: false));
        yield return ("k = 8 collapsed, order varies", RoutingIds.Collapsed(length, 8, orderVaries: true));

        // The grid stride (a multiple of 256 threads) is not a multiple of 6, so a thread's runs break here too.
        yield return ("k = 6 collapsed, same order", RoutingIds.Collapsed(length, 6, orderVaries: false));
        yield return ("90 % to one expert", RoutingIds.Hot(length, experts, 0.9));
        yield return ("all to one expert (k = 1 collapsed)", RoutingIds.Hot(length, experts, 1.0));
    }

    private static bool Supports(Accelerator accelerator, HistogramCounting counting)
    {
        if (!RoutingRecordKernel.Supports(accelerator, counting, out var reason))
        {
            Console.WriteLine($"{counting}: {reason}");
            return false;
        }

        return true;
    }

    /// <summary>Whether the device check times <paramref name="candidate"/> on <paramref name="accelerator"/>; if not, prints why.</summary>
    internal static bool Times(Accelerator accelerator, CandidateCounting candidate)
    {
        if (candidate == CandidateCounting.WarpAggregated && accelerator.AcceleratorType == AcceleratorType.CPU)
        {
            Console.WriteLine($"{candidate.Name}: not timed on the CPU accelerator, which emulates the warp match with a shuffle per lane for the tests (about 1.5 s per 64 Ki ids).");
            return false;
        }

        if (!candidate.Supports(accelerator, out var reason))
        {
            Console.WriteLine($"{candidate.Name}: {reason}");
            return false;
        }

        return true;
    }

    /// <summary>The median device time of a record in µs with <paramref name="policy"/> (null: the accelerator's), and the checksum of one record's counts.</summary>
    private static (double Micros, ulong Checksum) RecordMedian(Accelerator accelerator, int experts, int[] host, bool onCpu, RecordKernelPolicy? policy = null)
    {
        using var ids = accelerator.Allocate1D(host);
        var chosen = policy ?? RecordKernelPolicy.For(accelerator);
        return RecordMedian(accelerator, experts, ids.View, onCpu, a => RoutingRecordKernel.Create(a, chosen));
    }

    /// <summary>The median device time of a record of <paramref name="ids"/> with the record kernel <paramref name="createRecord"/> loads, and the checksum of one record's counts.</summary>
    internal static (double Micros, ulong Checksum) RecordMedian(Accelerator accelerator, int experts, ArrayView<int> ids, bool onCpu, Func<Accelerator, RoutingRecordLauncher> createRecord)
    {
        using var stream = accelerator.CreateStream();
        using var engine = new DeviceRoutingStats(accelerator, new RoutingStatsOptions { Experts = experts }, stream, createRecord);
        var tokens = (int)(ids.Length / 8);
        for (var i = 0; i < 3; i++)
        {
            engine.RecordRouting(ids, tokens, 8);
        }

        stream.Synchronize();
        var micros = Median(onCpu ? 5 : 50, stream, () => engine.RecordRouting(ids, tokens, 8));
        return (micros, CountsChecksum(engine, ids, tokens));
    }

    /// <summary>The checksum of the counts of one record of <paramref name="ids"/> into the cleared engine: equal checksums, equal counts.</summary>
    private static ulong CountsChecksum(DeviceRoutingStats engine, ArrayView<int> ids, int tokens)
    {
        engine.Reset();
        engine.RecordRouting(ids, tokens, 8);
        using var snapshot = engine.Snapshot();
        return RoutingIds.Checksum(snapshot.ExpertTokenCounts);
    }

    /// <summary>Prints the size's row and returns the parts of its record, timed on the same ids.</summary>
    private static RecordBreakdown Row(Accelerator accelerator, int experts, long length, bool onCpu)
    {
        var host = RoutingIds.Skewed(length, experts);
        using var ids = accelerator.Allocate1D(host);
        using var copyTarget = accelerator.Allocate1D<int>(length);
        using var stream = accelerator.CreateStream();
        var options = new RoutingStatsOptions { Experts = experts };
        var tokens = checked((int)(length / 8));
        using var engine = new DeviceRoutingStats(accelerator, options, stream);

        var reps = onCpu ? 5 : length >= 1 << 24 ? 50 : 1000;
        for (var i = 0; i < 3; i++)
        {
            engine.RecordRouting(ids.View, tokens, 8);
        }

        stream.Synchronize();
        var record = Median(reps, stream, () => engine.RecordRouting(ids.View, tokens, 8));
        var copy = Median(Math.Max(5, reps / 10), stream, () => copyTarget.View.CopyFrom(stream, ids.View));
        var breakdown = RecordBreakdown.Measure(accelerator, stream, ids.View, experts, reps, record, copy);

        var start = stream.AddProfilingMarker();
        for (var i = 0; i < reps; i++)
        {
            engine.RecordRouting(ids.View, tokens, 8);
        }

        var end = stream.AddProfilingMarker();
        end.Synchronize();
        var backToBack = (end - start).TotalMicroseconds / reps;

        var managedReps = length >= 1 << 24 ? 3 : 20;
        using var managed = new RoutingStats(options);
        var staging = new int[length];
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < managedReps; i++)
        {
            ids.View.CopyToCPU(stream, staging.AsSpan());   // waits for the copy: ILGPU synchronizes the stream
            managed.RecordRouting(staging, tokens, 8);
        }

        var managedMicros = clock.Elapsed.TotalMicroseconds / managedReps;

        var checksum = CountsChecksum(engine, ids.View, tokens);
        var readGbs = length * 4 / (record * 1e3);
        var copyGbs = length * 8 / (copy * 1e3);
        Console.WriteLine(
            $"| {length} | {record:F1} µs | {readGbs:F1} | {copyGbs:F1} | {readGbs / copyGbs:P0} | {backToBack:F1} µs | {managedMicros / 1000:F2} ms | {managedMicros / record:F2}x | {checksum} |");
        return breakdown;
    }

    /// <summary>Median device time in µs of one enqueued operation, between profiling markers.</summary>
    internal static double Median(int reps, AcceleratorStream stream, Action operation)
    {
        var markers = new List<(ProfilingMarker Start, ProfilingMarker End)>(reps);
        for (var i = 0; i < reps; i++)
        {
            var start = stream.AddProfilingMarker();
            operation();
            markers.Add((start, stream.AddProfilingMarker()));
        }

        stream.Synchronize();
        var times = markers.Select(m => (m.End - m.Start).TotalMicroseconds).Order().ToArray();
        foreach (var (start, end) in markers)
        {
            start.Dispose();
            end.Dispose();
        }

        return times[times.Length / 2];
    }

    private static int Option(string[] args, string name, int fallback) =>
        int.TryParse(OptionText(args, name, ""), out var value) ? value : fallback;

    private static string OptionText(string[] args, string name, string fallback)
    {
        var position = Array.IndexOf(args, name);
        return position >= 0 && position + 1 < args.Length ? args[position + 1] : fallback;
    }
}
