using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Bench;

/// <summary>
/// Where a record's device time goes, by timing its parts alone on the same ids with the record's
/// loop and grid rule: a bare read (load and sum the ids: the most any one-launch record with the
/// record's loads can reach; then the same with 128-bit loads), then the histogram without the
/// fold (count in shared memory, flush to global into the record's copies of the histogram), then the record kernel launched with nothing to fold, then the
/// whole record (which also folds the previous record in one more group). The record less the
/// histogram is what the fold still adds to a record, running beside the counting; the record
/// kernel without a fold tells whether that is the folding group's work or the counting's code
/// compiled together with the fold. Times in µs; the ratios are read rates against the copy's (read + written bytes).
/// </summary>
internal readonly record struct RecordBreakdown(long Ids, double BareReadUs, double BareQuadReadUs, double HistogramNoFoldUs, double RecordKernelNoFoldUs, double RecordUs, double CopyUs)
{
    public double BareReadPerCopy => OfCopy(BareReadUs);

    public double BareQuadReadPerCopy => OfCopy(BareQuadReadUs);

    public double HistogramNoFoldPerCopy => OfCopy(HistogramNoFoldUs);

    public double RecordPerCopy => OfCopy(RecordUs);

    /// <summary>What the fold still adds to a record, running beside the counting.</summary>
    public double RecordLessHistogramUs => RecordUs - HistogramNoFoldUs;

    /// <summary>Times the bare read and the histogram alone over <paramref name="ids"/>, median of <paramref name="reps"/>.</summary>
    public static RecordBreakdown Measure(Accelerator accelerator, AcceleratorStream stream, ArrayView<int> ids, int experts, int reps, double record, double copy)
    {
        var bareRead = accelerator.LoadKernel<ArrayView<int>, ArrayView<int>>(BareReadKernel);
        var bareQuadRead = accelerator.LoadKernel<ArrayView<int>, ArrayView<int>>(BareQuadReadKernel);
        var histogramOnly = RecordKernelPolicy.For(accelerator).Counting == HistogramCounting.QuadLoadRuns
            ? accelerator.LoadKernel<ArrayView<int>, int, ArrayView<ulong>, int, int>(HistogramOnlyKernel<QuadLoadRunCounting>)
            : accelerator.LoadKernel<ArrayView<int>, int, ArrayView<ulong>, int, int>(HistogramOnlyKernel<ThreadRunCounting>);
        var alignedStart = IdAlignment.AlignedStart(accelerator, ids);
        using var sink = accelerator.Allocate1D<int>(1);
        using var histogram = accelerator.Allocate1D<ulong>(RoutingStateLayout.BufferLength);
        var readConfig = RecordGrid(accelerator, bareRead.GetKernel(), ids.Length, experts).Config;
        var (histogramConfig, copies) = RecordGrid(accelerator, histogramOnly.GetKernel(), ids.Length, experts);
        bareRead(stream, readConfig, ids, sink.View);
        bareQuadRead(stream, readConfig, ids, sink.View);
        histogramOnly(stream, histogramConfig, ids, alignedStart, histogram.View, experts, copies);
        stream.Synchronize();
        return new RecordBreakdown(
            ids.Length,
            DeviceCheck.Median(reps, stream, () => bareRead(stream, readConfig, ids, sink.View)),
            DeviceCheck.Median(reps, stream, () => bareQuadRead(stream, readConfig, ids, sink.View)),
            DeviceCheck.Median(reps, stream, () => histogramOnly(stream, histogramConfig, ids, alignedStart, histogram.View, experts, copies)),
            CountingOnlyMedian(accelerator, stream, ids, experts, reps),
            record,
            copy);
    }

    /// <summary>
    /// The bare read with 128-bit loads alone over <paramref name="ids"/> (16-byte aligned), launched as the single-layer
    /// record of that many ids would be, median of <paramref name="reps"/> (µs): what the whole-model check sets a step
    /// against, one launch that reads the step's ids and counts nothing.
    /// </summary>
    public static double BareQuadReadMedian(Accelerator accelerator, AcceleratorStream stream, ArrayView<int> ids, int experts, int reps)
    {
        var bareQuadRead = accelerator.LoadKernel<ArrayView<int>, ArrayView<int>>(BareQuadReadKernel);
        using var sink = accelerator.Allocate1D<int>(1);
        var config = RecordGrid(accelerator, bareQuadRead.GetKernel(), ids.Length, experts).Config;
        bareQuadRead(stream, config, ids, sink.View);
        stream.Synchronize();
        return DeviceCheck.Median(reps, stream, () => bareQuadRead(stream, config, ids, sink.View));
    }

    public static void Print(CheckReport report, IReadOnlyList<RecordBreakdown> rows)
    {
        Console.WriteLine();
        Console.WriteLine("Where a record's time goes (device medians, same ids): a bare read of the ids (with 32-bit loads as ThreadRuns, and with 128-bit loads as QuadLoadRuns), the histogram without the fold (the library's counting here), the record kernel with nothing to fold, the record; read/copy as above.");
        var table = report.Table<RecordBreakdown>(
            "breakdown",
            new("ids", r => $"{r.Ids}"),
            new("bare read", r => $"{r.BareReadUs:F1} µs"),
            new("read/copy", r => $"{r.BareReadPerCopy:P0}"),
            new("bare read, 128-bit loads", r => $"{r.BareQuadReadUs:F1} µs"),
            new("read/copy", r => $"{r.BareQuadReadPerCopy:P0}"),
            new("histogram, no fold", r => $"{r.HistogramNoFoldUs:F1} µs"),
            new("read/copy", r => $"{r.HistogramNoFoldPerCopy:P0}"),
            new("record kernel, no fold", r => $"{r.RecordKernelNoFoldUs:F1} µs"),
            new("record", r => $"{r.RecordUs:F1} µs"),
            new("read/copy", r => $"{r.RecordPerCopy:P0}"),
            new("record − histogram", r => $"{r.RecordLessHistogramUs:F1} µs"));
        foreach (var row in rows)
        {
            table.Add(row);
        }
    }

    /// <summary>
    /// The record kernel's launches with no pending record, median of <paramref name="reps"/>: its
    /// counting alone, in state buffers of its own (the buffer's counts grow; nothing folds them).
    /// </summary>
    private static double CountingOnlyMedian(Accelerator accelerator, AcceleratorStream stream, ArrayView<int> ids, int experts, int reps)
    {
        var launch = RoutingRecordKernel.Create(accelerator);
        using var block = accelerator.Allocate1D<RoutingStateBlock>(1);
        using var counts = accelerator.Allocate1D<ulong>(RoutingStateLayout.BatchHistogramLength);
        using var invalid = accelerator.Allocate1D<ulong>(RoutingStateLayout.BatchBuffers);
        using var padded = accelerator.Allocate1D<ulong>(RoutingStateLayout.BatchBuffers);
        using var sums = accelerator.Allocate1D<double>(experts);
        using var perExpert = accelerator.Allocate1D<ulong>(experts);
        using var floats = accelerator.Allocate1D<float>(experts);
        using var decayed = accelerator.Allocate1D<double>(experts);
        using var ring = accelerator.Allocate1D<float>(RoutingStateLayout.VarianceWindow);
        var state = new RoutingStateViews
        {
            State = block.View, BatchHistogram = counts.View, BatchInvalid = invalid.View, BatchPaddedTokens = padded.View,
            UtilizationSums = sums.View, TokenCounts = perExpert.View,
            Utilization = floats.View, DecayedUtilization = decayed.View, VarianceHistory = ring.View,
        };
        var record = new RecordArguments { Experts = experts, Buffer = 0, TopK = 1 };
        var none = new RecordArguments { Buffer = -1 };
        counts.MemSetToZero(stream);
        invalid.MemSetToZero(stream);
        padded.MemSetToZero(stream);
        launch(stream, ids, state, record, none);
        stream.Synchronize();
        return DeviceCheck.Median(reps, stream, () => launch(stream, ids, state, record, none));
    }

    /// <summary>The read rate of a pass over the ids that took <paramref name="micros"/>, against the copy's (read + written bytes) rate.</summary>
    private double OfCopy(double micros) => CopyUs / micros / 2;

    /// <summary>The record kernel's grid rule (<see cref="CountingGrid"/>), for another kernel, and the histogram copies it sets.</summary>
    private static (KernelConfig Config, int Copies) RecordGrid(Accelerator accelerator, Kernel kernel, long length, int experts)
    {
        var grid = CountingGrid.For(accelerator, kernel, RecordKernelPolicy.For(accelerator));
        var groups = grid.Groups(length, experts, reserved: 0);
        return (new KernelConfig(groups, grid.GroupSize), grid.Copies(groups, experts));
    }

    /// <summary>Loads the ids as the record's counting does (four in flight per thread) and sums them; nothing else.</summary>
    private static void BareReadKernel(ArrayView<int> ids, ArrayView<int> sink)
    {
        var threads = (long)Grid.DimX * Group.DimX;
        var i = (long)Grid.IdxX * Group.DimX + Group.IdxX;
        var sum = 0;
        for (; i + 3 * threads < ids.Length; i += 4 * threads)
        {
            sum += ids[i] + ids[i + threads] + ids[i + 2 * threads] + ids[i + 3 * threads];
        }

        for (; i < ids.Length; i += threads)
        {
            sum += ids[i];
        }

        // A store that depends on every load, so that no compiler drops them; expert ids never sum to this.
        if (sum == int.MinValue)
        {
            sink[0] = sum;
        }
    }

    /// <summary>
    /// As <see cref="BareReadKernel"/>, with one 128-bit load for four consecutive ids, two in flight
    /// per thread (<see cref="QuadLoadRunCounting"/>'s loads, on ids that start 16-byte aligned): the most
    /// that counting can reach. The ids after the last whole quad are left out, as the read needs no count.
    /// </summary>
    private static void BareQuadReadKernel(ArrayView<int> ids, ArrayView<int> sink)
    {
        var quads = ids.AsAligned(4 * sizeof(int)).Cast<IdQuad>();
        var threads = (long)Grid.DimX * Group.DimX;
        var i = (long)Grid.IdxX * Group.DimX + Group.IdxX;
        var sum = 0;
        for (; i + threads < quads.Length; i += 2 * threads)
        {
            var p = quads[i];
            var q = quads[i + threads];
            sum += p.A + p.B + p.C + p.D + q.A + q.B + q.C + q.D;
        }

        if (i < quads.Length)
        {
            var p = quads[i];
            sum += p.A + p.B + p.C + p.D;
        }

        if (sum == int.MinValue)
        {
            sink[0] = sum;
        }
    }

    /// <summary>The record kernel's first half: the shared histogram of the ids (the library's counting here) flushed to global memory, group g into copy g mod <paramref name="copies"/>.</summary>
    private static void HistogramOnlyKernel<TCounting>(ArrayView<int> ids, int alignedStart, ArrayView<ulong> histogram, int experts, int copies)
        where TCounting : struct, IHistogramCounting
    {
        var bins = SharedMemory.Allocate<int>(RoutingStateLayout.MaxExperts + 1);
        for (var e = Group.IdxX; e <= experts; e += Group.DimX)
        {
            bins[e] = 0;
        }

        Group.Barrier();
        default(TCounting).CountShare(ids, alignedStart, bins, experts, Grid.DimX);
        Group.Barrier();
        var first = Grid.IdxX % copies * experts;
        for (var e = Group.IdxX; e < experts; e += Group.DimX)
        {
            var count = bins[e];
            if (count != 0)
            {
                Atomic.Add(ref histogram[first + e], (ulong)count);
            }
        }
    }
}
