using System.CommandLine;
using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Bench.Candidates;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;
using MoeGpuStats.Lab;

namespace MoeGpuStats.Bench;

/// <summary>
/// <c>--device-check [--experts E] [--sizes a,b,..] [--skew-size n] [--ids-per-bin a,b,..] [--groups-per-copy a,b,..] [--sweep-experts a,b,..] [--json FILE]</c>: one table in a few minutes on the best
/// accelerator (or <c>MOEGS_ACCELERATOR</c>); with <c>--json</c>, every table's rows also in FILE (<see cref="CheckReport"/>). Each record is timed on the device with profiling
/// markers after warm-up, median of many; the device-to-device copy bandwidth is measured in the
/// same run; the managed path (copy ids to the host, then the managed loop) is timed on the host.
/// The data and checksum are those of torch_baseline.py, so its table compares row by row.
/// </summary>
internal static class DeviceCheck
{
    /// <summary>The device <c>MOEGS_ACCELERATOR</c> names, else CUDA, then OpenCL, then the CPU accelerator.</summary>
    /// <exception cref="NoSuchDeviceException">No device of the kind <c>MOEGS_ACCELERATOR</c> names is present.</exception>
    public static ILGPU.Runtime.Device ChooseDevice(Context context)
    {
        var wanted = Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable)?.ToLowerInvariant();
        return context.Devices
            .Where(d => wanted is null or "" || d.AcceleratorType.ToString().Equals(wanted, StringComparison.OrdinalIgnoreCase))
            .OrderBy(d => d.AcceleratorType switch { AcceleratorType.Cuda => 0, AcceleratorType.OpenCL => 1, _ => 2 })
            .FirstOrDefault()
            ?? throw new NoSuchDeviceException(
                $"{RoutingStats.AcceleratorVariable}={wanted}: ILGPU lists no such device here ({string.Join(", ", context.Devices.Select(d => $"{d.AcceleratorType} {d.Name}"))}).");
    }

    private static readonly Option<int> Experts = QuickOptions.WholeNumber("--experts", 256, 1, RoutingStateLayout.MaxExperts, "the experts each record counts");
    private static readonly Option<long[]> Sizes = QuickOptions.WholeNumbers("--sizes", [32768L, 1048576, 16777216, 134217728], 8L, Array.MaxLength, "the ids of each record");
    private static readonly Option<int> SkewSize = QuickOptions.WholeNumber("--skew-size", 1 << 24, 8, Array.MaxLength, "the ids of the skew table's records");
    private static readonly Option<int[]> IdsPerBin = QuickOptions.WholeNumbers("--ids-per-bin", [0, 4, 8, 16, 32, 64], 0, int.MaxValue, "the grid rule's settings to sweep (0: no bound)");
    private static readonly Option<int[]> SweepExperts = QuickOptions.WholeNumbers("--sweep-experts", [], 1, RoutingStateLayout.MaxExperts, "the experts the grid rule's sweep counts (default --experts, 1024 and 4096)");
    private static readonly Option<int[]> GroupsPerCopy = QuickOptions.WholeNumbers("--groups-per-copy", [0, 256, 128, 64, 32], 0, int.MaxValue, "the flush copies' settings to sweep (0: one copy)");
    private static readonly Option<string?> Json = QuickOptions.Json();

    public static QuickMode Mode { get; } = new(
        new Option<bool>("--device-check"),
        "Times the single-layer record on the best accelerator (or MOEGS_ACCELERATOR) against the copy of its ids and the managed path.",
        [Experts, Sizes, SkewSize, IdsPerBin, SweepExperts, GroupsPerCopy, Json],
        Run);

    private static int Run(ParseResult parsed)
    {
        var experts = parsed.GetValue(Experts);
        var sizes = parsed.GetRequiredValue(Sizes);
        var skewLength = parsed.GetValue(SkewSize);
        var perBin = parsed.GetRequiredValue(IdsPerBin);
        var sweepExperts = parsed.GetRequiredValue(SweepExperts) is { Length: > 0 } chosen ? chosen.Distinct() : new[] { experts, 1024, RoutingStateLayout.MaxExperts }.Distinct();
        var perCopy = parsed.GetRequiredValue(GroupsPerCopy);
        using var context = Context.Create(builder => builder.Default().Profiling());
        var device = ChooseDevice(context);
        using var accelerator = device.CreateAccelerator(context);
        var onCpu = accelerator.AcceleratorType == AcceleratorType.CPU;
        var report = new CheckReport("device-check", accelerator, parsed.GetValue(Json));
        var launchBounds = CudaLaunchBounds.AppliesTo(accelerator);
        report.Set("experts", experts);
        report.Set("sizes", sizes);
        report.Set("launch_bounds", launchBounds);
        Console.WriteLine($"device: {accelerator.Name} ({accelerator.AcceleratorType}), experts={experts}, k=8 layout, one kernel launch per record, launch bounds {(launchBounds ? "applied" : "not applied")}");
        WarmUp(accelerator, experts, onCpu);
        var emptyLaunch = EmptyLaunchMedian(accelerator, onCpu);
        report.Set("empty_launch_us", emptyLaunch);
        Console.WriteLine($"An empty kernel between the same markers: {emptyLaunch:F1} µs (the floor under any one-launch record).");
        var records = report.Table<RecordRow>(
            "record",
            new("ids", r => $"{r.Ids}"),
            new("record median", r => $"{r.RecordUs:F1} µs"),
            new("record read GB/s", r => $"{r.ReadGbs:F1}"),
            new("d2d copy GB/s", r => $"{r.CopyGbs:F1}"),
            new("read/copy", r => $"{r.ReadPerCopy:P0}"),
            new("back-to-back per record", r => $"{r.BackToBackUs:F1} µs"),
            new("copy-to-host + managed", r => $"{r.CopyToHostManagedMs:F2} ms"),
            new("managed/device", r => $"{r.ManagedPerRecord:F2}x"),
            new("checksum", r => $"{r.Checksum}"));
        var breakdowns = sizes.Select(length => Row(accelerator, experts, length, onCpu, records)).ToArray();
        RecordBreakdown.Print(report, breakdowns);

        var policy = RecordKernelPolicy.For(accelerator);
        report.Set("skew_ids", skewLength);
        report.Set("default_counting", policy.Counting.ToString());
        var countings = Enum.GetValues<HistogramCounting>()
            .Where(c => Supports(accelerator, c))
            .Select(c => (Name: c.ToString(), Create: (Func<Accelerator, RoutingRecordLauncher>)(a => RoutingRecordKernel.Create(a, policy with { Counting = c }))))
            .Concat(CandidateCounting.All.Where(c => Times(accelerator, c)).Select(c => (c.Name, Create: (Func<Accelerator, RoutingRecordLauncher>)c.CreateDefault)))
            .ToArray();
        Console.WriteLine();
        Console.WriteLine($"Skewed loads, {skewLength} ids: many threads add to one bin at once. Record median, read GB/s and time against the uniform load, per histogram counting (default here {policy.Counting}).");
        var skew = report.Table<SkewRow>(
            "skew",
            [
                new("load", r => r.Load),
                .. countings.SelectMany((c, i) => new Column<SkewRow>[]
                {
                    new(c.Name, r => $"{r.Countings[i].RecordUs:F1} µs"),
                    new("GB/s", r => $"{r.Countings[i].ReadGbs:F1}"),
                    new("/ uniform", r => $"{r.Countings[i].PerUniform:F2}x"),
                }),
                new("checksum", r => Checksums(r.Checksums)),
            ]);
        var uniform = new double[countings.Length];
        foreach (var (load, host) in SkewedLoads(skewLength, experts))
        {
            var runs = new List<SkewRun>();
            var checksums = new List<ulong>();
            for (var c = 0; c < countings.Length; c++)
            {
                using var ids = accelerator.Allocate1D(host);
                var (micros, checksum) = RecordMedian(accelerator, experts, ids.View, onCpu, countings[c].Create);
                uniform[c] = load == "uniform" ? micros : uniform[c];
                checksums.Add(checksum);
                runs.Add(new SkewRun(countings[c].Name, micros, skewLength * 4 / (micros * 1e3), micros / uniform[c]));
            }

            skew.Add(new SkewRow(load, runs, [.. checksums.Distinct()]));
        }

        PaddingTable(report, accelerator, experts, sizes, onCpu);
        Queries(report, accelerator, experts);
        QueryLaunches(report, accelerator, [.. new[] { 64, experts, 1024, RoutingStateLayout.MaxExperts }.Distinct().Order()], onCpu);

        // Each extra group flushes up to E counts, so at thousands of experts fewer, longer groups
        // should pay: at 4,096 experts and 16 Mi ids, 256 ids per thread (a quarter of the groups)
        // took 50.1 µs against 85.4 on an H100 (a4037c7). 0 is the rule before that.
        Console.WriteLine();
        Console.WriteLine($"Grid rule: the fewest ids per expert a group takes before another group (default {policy.IdsPerBin}; 0: no such bound), with at least {policy.IdsPerThread} ids per thread (a small batch first gets a group per multiprocessor, down to {RecordKernelPolicy.FewestIdsPerThread}); record median in µs.");
        var idsPerBin = report.Table("ids_per_bin", SweepColumns(perBin.Select(n => $"{n}")));
        foreach (var sweepE in sweepExperts)
        {
            foreach (var length in sizes.Where(n => n >= 1 << 20))
            {
                var host = RoutingIds.Skewed(length, sweepE);
                idsPerBin.Add(Sweep(sweepE, length, perBin, n => RecordMedian(accelerator, sweepE, host, onCpu, policy with { IdsPerBin = n })));
            }
        }

        // Every group adds up to E counts into the record's batch buffer at the end of the record; spread
        // over copies, those atomics meet on fewer of the same addresses, and the fold sums the copies.
        // Buffers of 16,384 counts lost at 1,024 and 4,096 experts; back to 4,096.
        Console.WriteLine();
        Console.WriteLine($"Flush copies: counting groups per copy of the batch histogram (default {policy.GroupsPerCopy}; 0: one copy; at most {RoutingStateLayout.MaxCopies} copies and {RoutingStateLayout.BufferLength} / E), record median in µs.");
        var groupsPerCopy = report.Table("groups_per_copy", SweepColumns(perCopy.Select(n => n == 0 ? "one copy" : $"{n}")));
        foreach (var sweepE in new[] { experts, 1024, RoutingStateLayout.MaxExperts }.Distinct())
        {
            foreach (var length in sizes)
            {
                var host = RoutingIds.Skewed(length, sweepE);
                groupsPerCopy.Add(Sweep(sweepE, length, perCopy, n => RecordMedian(accelerator, sweepE, host, onCpu, policy with { GroupsPerCopy = n == 0 ? int.MaxValue : n })));
            }
        }

        // Last: a candidate kernel that fails on a device takes only this table with it.
        CandidateTable.Print(report, accelerator, experts, sizes, skewLength, onCpu);
        report.Complete();
        return 0;
    }

    /// <summary>Distinct checksums as the tables print them: one when every run counted the same, else all of them.</summary>
    internal static string Checksums(IEnumerable<ulong> checksums) => string.Join(" ≠ ", checksums);

    /// <summary>The columns of a sweep table: E, ids, the record median at each setting (headed <paramref name="settings"/>), the checksums.</summary>
    private static Column<SweepRow>[] SweepColumns(IEnumerable<string> settings) =>
    [
        new("E", r => $"{r.Experts}"),
        new("ids", r => $"{r.Ids}"),
        .. settings.Select((header, i) => new Column<SweepRow>(header, r => $"{r.Runs[i].RecordUs:F1}")),
        new("checksum", r => Checksums(r.Checksums)),
    ];

    /// <summary>A sweep table's row: <paramref name="record"/> at each of <paramref name="settings"/>, in order.</summary>
    private static SweepRow Sweep(int experts, long length, int[] settings, Func<int, (double Micros, ulong Checksum)> record)
    {
        var runs = settings.Select(n => (Setting: n, Run: record(n))).ToArray();
        return new SweepRow(experts, length, [.. runs.Select(r => new SweepRun(r.Setting, r.Run.Micros))], [.. runs.Select(r => r.Run.Checksum).Distinct()]);
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
    private static void Queries(CheckReport report, Accelerator accelerator, int experts)
    {
        using var ids = accelerator.Allocate1D(RoutingIds.Skewed(1 << 15, experts));
        using var engine = new DeviceRoutingStats(accelerator, new RoutingStatsOptions { Experts = experts });
        for (var i = 0; i < 200; i++)
        {
            engine.RecordRouting(ids.View, 1 << 12, 8);
        }

        Console.WriteLine();
        Console.WriteLine($"Host time per call after 200 records of 32 Ki ids, E = {experts} (each read is a launch or copy and one wait):");
        var table = report.Table<QueryRow>("queries", new("call", r => r.Call), new("median", r => $"{r.HostUs:F1} µs"));
        table.Add(new("RecordRouting (host time to enqueue, no wait)", HostMedian(() => engine.RecordRouting(ids.View, 1 << 12, 8))));
        table.Add(new("UtilizationCv()", HostMedian(() => engine.UtilizationCv())));
        table.Add(new("RecentLoadVarianceTrend(100)", HostMedian(() => engine.RecentLoadVarianceTrend(100))));
        table.Add(new("Snapshot()", HostMedian(() => engine.Snapshot().Dispose())));
        table.Add(new("RecordRouting then UtilizationCv() (the read first folds the record: one more launch)", HostMedian(() => { engine.RecordRouting(ids.View, 1 << 12, 8); engine.UtilizationCv(); })));
    }

    /// <summary>
    /// A read's device time by expert count: the query launch and its 36-byte copy between profiling
    /// markers, median of 200, next to the host time of the same call (which adds the wait).
    /// </summary>
    private static void QueryLaunches(CheckReport report, Accelerator accelerator, int[] expertCounts, bool onCpu)
    {
        Console.WriteLine();
        Console.WriteLine("UtilizationCv() by expert count after 1,000 records (the variance ring full): device time between markers, and host time.");
        var table = report.Table<QueryLaunchRow>("query_launches", new("E", r => $"{r.Experts}"), new("device", r => $"{r.DeviceUs:F1} µs"), new("host", r => $"{r.HostUs:F1} µs"));
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
            table.Add(new(experts, device, HostMedian(() => engine.UtilizationCv())));
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
    private static void PaddingTable(CheckReport report, Accelerator accelerator, int experts, long[] sizes, bool onCpu)
    {
        Console.WriteLine();
        Console.WriteLine($"Padding: record median in µs of the same batch (k = 8) without padding, with its last 5 % of tokens padded (all 8 ids −1), and with every 16th slot −1; the ratios to no padding. Checksums differ by design (padding is not counted).");
        var table = report.Table<PaddingRow>(
            "padding",
            new("ids", r => $"{r.Ids}"),
            new("no padding", r => $"{r.NoPaddingUs:F1}"),
            new("last 5 % of tokens padded", r => $"{r.TailPaddedUs:F1}"),
            new("padded / none", r => $"{r.TailPaddedPerNone:F2}x"),
            new("every 16th slot empty", r => $"{r.SlotsEmptyUs:F1}"),
            new("empty / none", r => $"{r.SlotsEmptyPerNone:F2}x"));
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
            table.Add(new(length, none, padded, padded / none, holes, holes / none));
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

    /// <summary>Adds the size's row to <paramref name="table"/> and returns the parts of its record, timed on the same ids.</summary>
    private static RecordBreakdown Row(Accelerator accelerator, int experts, long length, bool onCpu, ResultTable<RecordRow> table)
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
        table.Add(new RecordRow(length, record, readGbs, copyGbs, readGbs / copyGbs, backToBack, managedMicros / 1000, managedMicros / record, checksum));
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

    /// <summary>
    /// The first table's row: a record of the baseline's data, the device-to-device copy of the same ids
    /// (its rate counts bytes read plus written), records back to back, and the managed path (copy the
    /// ids to the host, then <see cref="RoutingStats"/>) against the device record.
    /// </summary>
    private sealed record RecordRow(long Ids, double RecordUs, double ReadGbs, double CopyGbs, double ReadPerCopy, double BackToBackUs, double CopyToHostManagedMs, double ManagedPerRecord, ulong Checksum);

    /// <summary>A load of the skew table, each counting's record of it, and the distinct checksums of their counts.</summary>
    private sealed record SkewRow(string Load, IReadOnlyList<SkewRun> Countings, IReadOnlyList<ulong> Checksums);

    /// <summary>A counting's record of a skewed load; <c>PerUniform</c>: its time over the same counting's on the uniform load.</summary>
    private sealed record SkewRun(string Counting, double RecordUs, double ReadGbs, double PerUniform);

    /// <summary>A row of a sweep of one policy setting (ids per bin, groups per copy): a record at each setting, and the distinct checksums.</summary>
    private sealed record SweepRow(int Experts, long Ids, IReadOnlyList<SweepRun> Runs, IReadOnlyList<ulong> Checksums);

    /// <summary>The record median at one setting, as given on the command line (groups per copy 0: one copy).</summary>
    private sealed record SweepRun(int Setting, double RecordUs);

    /// <summary>The same batch without padding, with its last 5 % of tokens padded, and with every 16th slot empty.</summary>
    private sealed record PaddingRow(long Ids, double NoPaddingUs, double TailPaddedUs, double TailPaddedPerNone, double SlotsEmptyUs, double SlotsEmptyPerNone);

    private sealed record QueryRow(string Call, double HostUs);

    private sealed record QueryLaunchRow(int Experts, double DeviceUs, double HostUs);
}

/// <summary>No device of the kind <c>MOEGS_ACCELERATOR</c> names: the message says which, and which devices ILGPU lists.</summary>
internal sealed class NoSuchDeviceException(string message) : Exception(message);
