using ILGPU;
using ILGPU.Runtime;
using static MoeGpuStats.Kernels.RoutingStateLayout;

namespace MoeGpuStats.Kernels;

/// <summary>
/// One record in one launch, the fold one record behind. Every group but the last builds a private
/// histogram of its grid-stride share of the ids in shared memory and adds it to one copy of the
/// record's batch buffer of <see cref="RoutingStateViews.BatchHistogram"/>; meanwhile the last group folds the
/// previous record, whose buffer the previous launch completed, into the running state, as the
/// seed's <c>record_routing</c> does, and clears that buffer. The two buffers alternate; the host
/// folds a pending record alone before any read.
/// </summary>
/// <remarks>
/// The groups' flushes spread over copies of the histogram (<see cref="RecordArguments.Copies"/>):
/// a thousand groups adding into the same E counts at the end of a large record cost it about 7 µs
/// at 16 Mi ids on an H100 and an H200 (one copy against 16), far more than the fold's sum of the copies.
/// The fold runs beside the counting rather than after it: groups need no ticket to find the last
/// one to finish, nor device-wide fences, and a record's time is the longer of the two parts
/// instead of their sum. The fold's one group is a few microseconds of dependent steps, which would otherwise
/// follow every record's read.
/// Shared memory is statically sized (<see cref="MaxExperts"/> + 1 bins):
/// ILGPU's dynamic shared memory returned wrong histograms on PoCL 5's OpenCL device.
/// The load variance's squares are computed by every thread and summed by one in expert order, as
/// the seed sums them, and every product is rounded before it is added (<see cref="UnfusedMath"/>),
/// so that the floats equal the managed engine's bit for bit (the variance trend amplifies any
/// difference).
/// </remarks>
internal static partial class RoutingRecordKernel
{
    /// <summary>Threads per group, or fewer where the accelerator allows fewer.</summary>
    public const int PreferredGroupSize = 256;

    /// <summary>The kernel body; launch it through <see cref="Create(Accelerator)"/>.</summary>
    /// <param name="ids">The record's ids.</param>
    /// <param name="state">The routing state.</param>
    /// <param name="arguments">The record that every group but the folding one counts.</param>
    /// <param name="pending">The record that the last group folds, when there is one (buffer ≥ 0).</param>
    internal static void Kernel<TCounting>(ArrayView<int> ids, RoutingStateViews state, RecordArguments arguments, RecordArguments pending)
        where TCounting : struct, IHistogramCounting
    {
        // One bin more than the most experts: the ids out of range.
        var bins = SharedMemory.Allocate<int>(MaxExperts + 1);
        var partials = SharedMemory.Allocate<long>(PreferredGroupSize);

        var countingGroups = pending.Buffer >= 0 ? Grid.DimX - 1 : Grid.DimX;
        if (Grid.IdxX == countingGroups)
        {
            Fold(state, pending, bins, partials);
            return;
        }

        var thread = Group.IdxX;
        var groupSize = Group.DimX;
        var experts = arguments.Experts;

        for (var e = thread; e <= experts; e += groupSize)
        {
            bins[e] = 0;
        }

        Group.Barrier();
        default(TCounting).CountShare(ids, arguments.AlignedStart, bins, experts, countingGroups);
        Group.Barrier();

        var first = arguments.Buffer * BufferLength + Grid.IdxX % arguments.Copies * experts;
        for (var e = thread; e < experts; e += groupSize)
        {
            var count = bins[e];
            if (count != 0)
            {
                Atomic.Add(ref state.BatchHistogram[first + e], (ulong)count);
            }
        }

        // The out-of-range bin holds the invalid ids and the empty slots (−1) together; only a group
        // that saw either reads its share again to tell them apart (the bin is group-uniform here).
        long invalid = bins[experts];
        long paddedTokens = 0;
        if (invalid != 0)
        {
            int emptySlots = 0, padded = 0;
            default(TCounting).CountPadding(ids, arguments.AlignedStart, arguments.TopK, countingGroups, ref emptySlots, ref padded);
            invalid -= GroupReduction.Sum(emptySlots, partials);
            paddedTokens = GroupReduction.Sum(padded, partials);
        }

        if (thread == 0 && invalid != 0)
        {
            Atomic.Add(ref state.BatchInvalid[arguments.Buffer], (ulong)invalid);
        }

        if (thread == 0 && paddedTokens != 0)
        {
            Atomic.Add(ref state.BatchPaddedTokens[arguments.Buffer], (ulong)paddedTokens);
        }
    }
}
