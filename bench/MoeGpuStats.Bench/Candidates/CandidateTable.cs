using ILGPU;
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
    public static void Print(Accelerator accelerator, int experts, IReadOnlyList<long> sizes, long skewLength, bool onCpu)
    {
        var library = RecordKernelPolicy.For(accelerator);
        var countings = new[] { library.Counting, HistogramCounting.ThreadRuns, HistogramCounting.QuadLoadRuns }
            .Distinct()
            .Where(c => RoutingRecordKernel.Supports(accelerator, c, out _))
            .Select(c => (Name: c == library.Counting ? $"{c} (library)" : c.ToString(), Create: (Func<Accelerator, RoutingRecordLauncher>)(a => RoutingRecordKernel.Create(a, library with { Counting = c }))))
            .Concat(CandidateCounting.All.Where(c => DeviceCheck.Times(accelerator, c)).Select(c => (c.Name, Create: (Func<Accelerator, RoutingRecordLauncher>)c.CreateDefault)))
            .ToArray();
        Console.WriteLine();
        Console.WriteLine($"Countings, the library's default here first, then its other countings and the candidates of bench/MoeGpuStats.Lab (not in the library: measured slower, or not yet measured): record median in µs (the mean of one timing in order and one in reverse), E = {experts}.");
        Console.WriteLine($"| load | ids |{string.Concat(countings.Select(c => $" {c.Name} |"))} checksum |");
        Console.WriteLine($"| --- | --- |{string.Concat(countings.Select(_ => " --- |"))} --- |");
        foreach (var length in sizes)
        {
            Row(accelerator, experts, "baseline data", RoutingIds.Skewed(length, experts), countings, onCpu);
        }

        Row(accelerator, experts, "uniform", RoutingIds.Hot(skewLength, experts, 0.0), countings, onCpu);
        Row(accelerator, experts, "k = 8 collapsed, same order", RoutingIds.Collapsed(skewLength, 8, orderVaries: false), countings, onCpu);
        Row(accelerator, experts, "all to one expert", RoutingIds.Hot(skewLength, experts, 1.0), countings, onCpu);
    }

    private static void Row(Accelerator accelerator, int experts, string load, int[] host, IReadOnlyList<(string Name, Func<Accelerator, RoutingRecordLauncher> Create)> countings, bool onCpu)
    {
        using var ids = accelerator.Allocate1D(host);

        // Timed in order, then in reverse, and averaged: the gains sought are a few percent, about
        // what a clock that drifts through the row would give the countings timed later.
        var forward = countings.Select(c => DeviceCheck.RecordMedian(accelerator, experts, ids.View, onCpu, c.Create)).ToArray();
        var backward = countings.Reverse().Select(c => DeviceCheck.RecordMedian(accelerator, experts, ids.View, onCpu, c.Create)).Reverse().ToArray();
        var micros = forward.Zip(backward, (a, b) => (a.Micros + b.Micros) / 2);

        // One checksum when every counting gave the same counts; a difference shows them all.
        var checksums = string.Join(" ≠ ", forward.Concat(backward).Select(run => run.Checksum).Distinct());
        Console.WriteLine($"| {load} | {host.Length} |{string.Concat(micros.Select(m => $" {m:F1} |"))} {checksums} |");
    }
}
