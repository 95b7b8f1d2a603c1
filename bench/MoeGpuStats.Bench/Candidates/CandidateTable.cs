using ILGPU.Runtime;
using MoeGpuStats.Kernels;
using MoeGpuStats.Lab;

namespace MoeGpuStats.Bench.Candidates;

/// <summary>
/// The device check's table of the library's countings (its default for the accelerator first) and
/// <see cref="CandidateCounting.All"/>: whole records (the fold included) on the same ids, the
/// baseline's data at every size and the skewed loads at one, with the counts' checksums to show
/// that every counting counted the same.
/// </summary>
internal static class CandidateTable
{
    public static void Print(CheckReport report, Accelerator accelerator, int experts, IReadOnlyList<long> sizes, long skewLength, bool onCpu)
    {
        var library = RecordKernelPolicy.For(accelerator);
        var countings = new[] { library.Counting, HistogramCounting.ThreadRuns, HistogramCounting.QuadLoadRuns }
            .Distinct()
            .Where(c => RoutingRecordKernel.Supports(accelerator, c, out _))
            .Select(c => new Counting(c.ToString(), c == library.Counting, a => RoutingRecordKernel.Create(a, library with { Counting = c })))
            .Concat(CandidateCounting.All.Where(c => DeviceCheck.Times(accelerator, c)).Select(c => new Counting(c.Name, false, c.CreateDefault)))
            .ToArray();
        Console.WriteLine();
        Console.WriteLine($"Countings, the library's default here first, then its other countings and the candidates of bench/MoeGpuStats.Lab (not in the library: measured slower, or not yet measured): record median in µs (the mean of one timing in order and one in reverse), E = {experts}.");
        var table = report.Table<CandidateRow>(
            "candidates",
            [
                new("load", r => r.Load),
                new("ids", r => $"{r.Ids}"),
                .. countings.Select((c, i) => new Column<CandidateRow>(c.Library ? $"{c.Name} (library)" : c.Name, r => $"{r.Countings[i].RecordUs:F1}")),
                new("checksum", r => DeviceCheck.Checksums(r.Checksums)),
            ]);
        foreach (var length in sizes)
        {
            table.Add(Row(accelerator, experts, "baseline data", RoutingIds.Skewed(length, experts), countings, onCpu));
        }

        table.Add(Row(accelerator, experts, "uniform", RoutingIds.Hot(skewLength, experts, 0.0), countings, onCpu));
        table.Add(Row(accelerator, experts, "k = 8 collapsed, same order", RoutingIds.Collapsed(skewLength, 8, orderVaries: false), countings, onCpu));
        table.Add(Row(accelerator, experts, "all to one expert", RoutingIds.Hot(skewLength, experts, 1.0), countings, onCpu));
    }

    private static CandidateRow Row(Accelerator accelerator, int experts, string load, int[] host, IReadOnlyList<Counting> countings, bool onCpu)
    {
        using var ids = accelerator.Allocate1D(host);

        // Timed in order, then in reverse, and averaged: the gains sought are a few percent, about
        // what a clock that drifts through the row would give the countings timed later.
        var forward = countings.Select(c => DeviceCheck.RecordMedian(accelerator, experts, ids.View, onCpu, c.Create)).ToArray();
        var backward = countings.Reverse().Select(c => DeviceCheck.RecordMedian(accelerator, experts, ids.View, onCpu, c.Create)).Reverse().ToArray();
        var runs = countings.Select((c, i) => new CountingRun(c.Name, c.Library, (forward[i].Micros + backward[i].Micros) / 2));

        // One checksum when every counting gave the same counts; a difference shows them all.
        return new CandidateRow(load, host.Length, [.. runs], [.. forward.Concat(backward).Select(run => run.Checksum).Distinct()]);
    }

    /// <summary>A counting the table times; <c>Library</c>: the library's default on this accelerator.</summary>
    private sealed record Counting(string Name, bool Library, Func<Accelerator, RoutingRecordLauncher> Create);

    /// <summary>A load at one size, each counting's record median of it, and the distinct checksums of their counts.</summary>
    private sealed record CandidateRow(string Load, long Ids, IReadOnlyList<CountingRun> Countings, IReadOnlyList<ulong> Checksums);

    private sealed record CountingRun(string Counting, bool Library, double RecordUs);
}
