using System.Diagnostics.CodeAnalysis;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using static MoeGpuStats.Kernels.UnfusedMath;

namespace MoeGpuStats.Kernels;

/// <summary>
/// Launches one record: the histogram of <paramref name="ids"/> into the batch slot of
/// <paramref name="arguments"/>, and the fold of the <paramref name="pending"/> record (counted
/// by an earlier launch) into the running state, in one kernel launch. Launches nothing when there
/// is neither.
/// </summary>
/// <param name="stream">The stream the record is ordered on; the call does not wait for it.</param>
/// <param name="ids">Top-k expert ids (any length; empty when the histogram was uploaded instead).</param>
/// <param name="state">The routing state.</param>
/// <param name="arguments">The batch's host-known scalars and the slot its ids are counted into (<see cref="RecordArguments.Slot"/> −1: none).</param>
/// <param name="pending">The record to fold as an earlier launch returned it (<see cref="RecordArguments.Slot"/> −1: none).</param>
/// <returns><paramref name="arguments"/> with the <see cref="RecordArguments.Copies"/> its groups counted into: the next launch's <paramref name="pending"/>.</returns>
internal delegate RecordArguments RoutingRecordLauncher(AcceleratorStream stream, ArrayView<int> ids, RoutingStateViews state, RecordArguments arguments, RecordArguments pending);

/// <summary>
/// One record in one launch, the fold one record behind. Every group but the last builds a private
/// histogram of its grid-stride share of the ids in shared memory and adds it to one copy of the
/// record's slot of <see cref="RoutingStateViews.BatchHistogram"/>; meanwhile the last group folds the
/// previous record, whose slot the previous launch completed, into the running state, as the
/// seed's <c>record_routing</c> does, and clears that slot. The two slots alternate; the host
/// folds a pending record alone before any read.
/// </summary>
/// <remarks>
/// The groups' flushes spread over copies of the histogram (<see cref="RecordArguments.Copies"/>):
/// a thousand groups adding into the same E counts at the end of a large record cost it about 7 µs
/// at 16 Mi ids on an H100 and an H200 (one copy against 16), far more than the fold's sum of the copies.
/// The fold runs beside the counting rather than after it: groups need no ticket to find the last
/// one to finish, nor device-wide fences, and a record's time is the longer of the two parts
/// instead of their sum. The fold's one group is a few microseconds of dependent steps that used to
/// follow every record's read.
/// Shared memory is statically sized (<see cref="MaxExperts"/> + 1 bins):
/// ILGPU's dynamic shared memory returned wrong histograms on PoCL 5's OpenCL device.
/// The load variance's squares are computed by every thread and summed by one in expert order, as
/// the seed sums them, and every product is rounded before it is added (<see cref="UnfusedMath"/>),
/// so that the floats equal the managed engine's bit for bit (the variance trend amplifies any
/// difference).
/// </remarks>
internal static class RoutingRecordKernel
{
    /// <summary>The most experts a state can hold (16 KiB of shared bins per group).</summary>
    public const int MaxExperts = 4096;

    /// <summary>Length of the variance ring, as the seed's history window.</summary>
    public const int VarianceWindow = 1000;

    /// <summary>Threads per group, or fewer where the accelerator allows fewer.</summary>
    public const int PreferredGroupSize = 256;

    /// <summary>Batch-histogram slots: the record being counted and the one being folded.</summary>
    public const int BatchSlots = 2;

    /// <summary>The most copies of a slot's histogram that counting groups spread their flushes over.</summary>
    public const int MaxCopies = 16;

    /// <summary>
    /// The counts a batch slot holds: <see cref="MaxCopies"/> copies of the histogram up to 256
    /// experts, fewer above (<c>SlotLength / E</c>: 4 at 1,024, one at <see cref="MaxExperts"/>).
    /// </summary>
    /// <remarks>
    /// Slots of 16,384 counts (16 copies at 1,024 experts, 4 at 4,096) were slower on an H100 at
    /// 16 Mi ids: 41.4 against 32.1 µs at 1,024 experts, 85.5 against 77.4 µs at 4,096
    /// (docs/performance.md, session 11).
    /// </remarks>
    public const int SlotLength = MaxExperts;

    /// <summary>The kernel body; launch it through <see cref="Create(Accelerator)"/>.</summary>
    /// <param name="ids">The record's ids.</param>
    /// <param name="state">The routing state.</param>
    /// <param name="arguments">The record that every group but the folding one counts.</param>
    /// <param name="pending">The record that the last group folds, when there is one (slot ≥ 0).</param>
    internal static void Kernel<TCounting>(ArrayView<int> ids, RoutingStateViews state, RecordArguments arguments, RecordArguments pending)
        where TCounting : struct, IHistogramCounting
    {
        // One bin more than the most experts: the ids out of range.
        var bins = SharedMemory.Allocate<int>(MaxExperts + 1);
        var partials = SharedMemory.Allocate<long>(PreferredGroupSize);

        var countingGroups = pending.Slot >= 0 ? Grid.DimX - 1 : Grid.DimX;
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

        var first = arguments.Slot * SlotLength + Grid.IdxX % arguments.Copies * experts;
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
            invalid -= GroupSum(emptySlots, partials);
            paddedTokens = GroupSum(padded, partials);
        }

        if (thread == 0 && invalid != 0)
        {
            Atomic.Add(ref state.BatchInvalid[arguments.Slot], (ulong)invalid);
        }

        if (thread == 0 && paddedTokens != 0)
        {
            Atomic.Add(ref state.BatchPaddedTokens[arguments.Slot], (ulong)paddedTokens);
        }
    }

    /// <summary>Folds the record counted into <paramref name="arguments"/>' slot into the state, and clears the slot.</summary>
    /// <remarks>
    /// The batch counts are kept as float bits in <paramref name="bins"/>, the shared histogram that a
    /// folding group does not count into: one 16 KiB array per group instead of two lets a
    /// multiprocessor hold all the groups it can run.
    /// </remarks>
    private static void Fold(RoutingStateViews state, RecordArguments arguments, ArrayView<int> bins, ArrayView<long> partials)
    {
        var thread = Group.IdxX;
        var groupSize = Group.DimX;
        var experts = arguments.Experts;
        // An index, not a sub-view: the sub-view's base pointer held across the loop took a 33rd register.
        var first = arguments.Slot * SlotLength;
        // Two fields here and the block staged in shared memory below: a copy of the whole block
        // held across this loop cost 20 registers per thread (52 instead of 32 on sm_90), which
        // halved the groups a multiprocessor holds.
        var resize = state.State[0].Experts != experts;
        // The seed's running means (alpha = 1 / n in f32) stall once 1 - 1/n rounds to 1; sums in
        // f64 over n give the same means without drift (see RoutingMeans).
        var routings = (double)(state.State[0].TotalRoutings + 1);
        var tokens = arguments.Tokens - (int)state.BatchPaddedTokens[arguments.Slot];
        float batchTokens = tokens;
        double exactTokens = tokens;
        var decay = arguments.UtilizationDecay;

        long partialSum = 0;
        long partialOverflow = 0;
        for (var e = thread; e < experts; e += groupSize)
        {
            // Every load before the first store, so that they and the copies' loads are in flight
            // together: after a store, a load waits for it (the compiler must assume the views
            // alias), and each store waited for its own load.
            var shareSum = state.UtilizationSums[e];
            var tokenCount = state.TokenCounts[e];
            var count = TakeCount(state.BatchHistogram, first + e, experts, arguments.Copies);
            float share = tokens > 0 ? count / batchTokens : 0f;
            bins[e] = (int)Interop.FloatAsInt((float)count);
            shareSum = (resize ? 0.0 : shareSum) + (tokens > 0 ? count / exactTokens : 0.0);
            state.UtilizationSums[e] = shareSum;
            state.Utilization[e] = (float)(shareSum / routings);
            state.TokenCounts[e] = (resize ? 0UL : tokenCount) + (ulong)count;
            if (decay >= 0f)
            {
                state.DecayedUtilization[e] = Mul(decay, resize ? 0f : state.DecayedUtilization[e]) + Mul(1.0f - decay, share);
            }

            partialSum += count;
            if (arguments.ExpertCapacity > 0 && count > arguments.ExpertCapacity)
            {
                partialOverflow += count - arguments.ExpertCapacity;
            }
        }

        var batchSum = GroupSum(partialSum, partials);
        var overflow = arguments.ExpertCapacity > 0 ? GroupSum(partialOverflow, partials) : 0L;
        // Every thread has read the padded tokens (the sums' barriers): the slot's count is free.
        if (thread == 0)
        {
            state.BatchPaddedTokens[arguments.Slot] = 0UL;
        }

        // The group sums' slots are free now. They take the block (loaded by as many threads at once,
        // for one thread to update there: updated in place in global memory, each of its
        // read-modify-writes waited for a round trip, a load after a store waiting for the store as
        // the compiler must assume they alias, about eight in a row), then the batch's invalid
        // count, the variance's ring slot and the variance.
        var blockWords = Interop.SizeOf<RoutingStateBlock>() / sizeof(long);   // whole: the block holds ulongs, so its size is a multiple of 8
        var invalidAt = blockWords;
        var slotAt = blockWords + 1;
        var varianceAt = blockWords + 2;
        var stored = state.State.Cast<long>();
        for (var i = thread; i <= invalidAt; i += groupSize)
        {
            partials[i] = i < blockWords ? stored[i] : (long)Atomic.Exchange(ref state.BatchInvalid[arguments.Slot], 0UL);
        }

        // The squares in parallel, the sum by one thread in expert order (the seed's rounding).
        var mean = (float)batchSum / experts;
        for (var e = thread; e < experts; e += groupSize)
        {
            var diff = Interop.IntAsFloat((uint)bins[e]) - mean;
            bins[e] = (int)Interop.FloatAsInt(Mul(diff, diff));
        }

        Group.Barrier();

        // The variance's in-order sum and the block's update meet only at the ring slot: two threads
        // in different warps run them at once.
        if (thread == 0)
        {
            partials[varianceAt] = Interop.FloatAsInt(InOrderReduction.Sum(bins.Cast<float>(), experts) / experts);
        }

        if (thread == GroupRoles.FirstThreadOfWarp(1, groupSize))
        {
            partials[slotAt] = UpdateBlock(ref partials.Cast<RoutingStateBlock>()[0], arguments, tokens, batchSum, overflow, (ulong)partials[invalidAt], routings);
        }

        Group.Barrier();
        for (var i = thread; i < blockWords; i += groupSize)
        {
            stored[i] = partials[i];
        }

        // Only a block that no record kernel wrote holds a ring position outside the ring: its
        // variance is dropped rather than written out of bounds.
        var slot = partials[slotAt];
        if (thread == 0 && (ulong)slot < VarianceWindow)
        {
            state.VarianceHistory[(int)slot] = Interop.IntAsFloat((uint)partials[varianceAt]);
        }
    }

    /// <summary>
    /// The count at <paramref name="at"/> summed over the <paramref name="copies"/> copies of the
    /// histogram, <paramref name="stride"/> apart, each left zero: four loads in flight at a time,
    /// then their stores. Not atomic exchanges: ILGPU's generic-address exchange branches on whether
    /// the address was global, which waits for each exchange in turn (SASS); no other group touches
    /// a slot while it is folded.
    /// </summary>
    private static long TakeCount(ArrayView<ulong> histogram, int at, int stride, int copies)
    {
        var count = 0UL;
        for (var copy = 0; copy < copies; copy += 4, at += 4 * stride)
        {
            var more = copies - copy;
            var a = histogram[at];
            var b = more > 1 ? histogram[at + stride] : 0UL;
            var c = more > 2 ? histogram[at + 2 * stride] : 0UL;
            var d = more > 3 ? histogram[at + 3 * stride] : 0UL;
            histogram[at] = 0UL;
            if (more > 1)
            {
                histogram[at + stride] = 0UL;
            }

            if (more > 2)
            {
                histogram[at + 2 * stride] = 0UL;
            }

            if (more > 3)
            {
                histogram[at + 3 * stride] = 0UL;
            }

            count += a + b + c + d;
        }

        return (long)count;
    }

    /// <summary>The block's totals, averages and ring position after the batch; returns the ring slot of the batch's variance.</summary>
    /// <remarks>
    /// Dropped and kept are counted in the record's units: token-expert slots for top-k ids
    /// (<see cref="RecordArguments.TopK"/> ≥ 1), where a capacity drops slots, not whole tokens;
    /// tokens for a histogram the caller counted (<see cref="RecordArguments.TopK"/> 0), as the seed counts them.
    /// </remarks>
    private static int UpdateBlock(ref RoutingStateBlock block, RecordArguments arguments, int tokens, long batchSum, long overflow, ulong invalid, double routings)
    {
        var experts = arguments.Experts;
        var fromIds = arguments.TopK > 0;
        var capacity = arguments.ExpertCapacity > 0;
        var routed = fromIds ? batchSum : tokens;
        long explicitDropped = arguments.TokensDropped;
        var droppedSlots = capacity ? overflow
            : fromIds ? (explicitDropped * arguments.TopK < batchSum ? explicitDropped * arguments.TopK : batchSum)
            : explicitDropped;

        block.TotalRoutings++;
        block.TotalTokens += (ulong)tokens;
        block.TokensDropped += capacity ? 0UL : (ulong)explicitDropped;
        block.RoutedSlots += (ulong)routed;
        block.SlotsDropped += (ulong)droppedSlots;
        block.InvalidExpertIds += invalid;
        block.LoadBalanceLossSum += arguments.LoadBalanceLoss;
        block.RouterZLossSum += arguments.RouterZLoss;
        block.AverageLoadBalanceLoss = (float)(block.LoadBalanceLossSum / routings);
        block.AverageRouterZLoss = (float)(block.RouterZLossSum / routings);
        if (block.RoutedSlots > 0)
        {
            block.RoutingEfficiency = Mul((float)(block.RoutedSlots - block.SlotsDropped) / block.RoutedSlots, 100.0f);
        }

        block.Experts = experts;

        var head = block.VarianceHead;
        var filled = block.VarianceCount;
        var slot = head + filled;
        if (slot >= VarianceWindow)
        {
            slot -= VarianceWindow;
        }

        if (filled < VarianceWindow)
        {
            block.VarianceCount = filled + 1;
        }
        else
        {
            block.VarianceHead = head + 1 == VarianceWindow ? 0 : head + 1;
        }

        var kept = capacity ? batchSum - overflow : batchSum;
        var current = kept / Mul(experts, arguments.SlotsPerExpert);
        var capacityAlpha = 0.1f;
        block.CapacityAverageUtilization = Mul(capacityAlpha, current) + Mul(1.0f - capacityAlpha, block.CapacityAverageUtilization);
        block.CapacityPeakUtilization = current > block.CapacityPeakUtilization ? current : block.CapacityPeakUtilization;
        if (droppedSlots > 0)
        {
            block.CapacityExceededCount++;
        }

        block.TotalUsed += (ulong)kept;
        block.TotalCapacity += (ulong)experts * (ulong)arguments.SlotsPerExpert;
        return slot;
    }

    /// <summary>
    /// The sum of every thread's <paramref name="value"/>, returned to every thread of the group, by a
    /// tree in <paramref name="partials"/> (one slot per thread). Not a shared 64-bit atomic add: NVIDIA
    /// GPUs have none, and the compare-and-swap loop that replaces it serializes a group's 256 threads
    /// on one address (docs/performance.md gives what it cost).
    /// </summary>
    internal static long GroupSum(long value, ArrayView<long> partials)
    {
        var thread = Group.IdxX;
        var groupSize = Group.DimX;
        partials[thread] = value;
        Group.Barrier();
        var stride = 1;
        while (stride * 2 < groupSize)
        {
            stride *= 2;
        }

        for (; stride > 0; stride /= 2)
        {
            if (thread < stride && thread + stride < groupSize)
            {
                partials[thread] += partials[thread + stride];
            }

            Group.Barrier();
        }

        var sum = partials[0];
        Group.Barrier();
        return sum;
    }

    /// <summary>Loads the kernel once on <paramref name="accelerator"/>, tuned by <see cref="RecordKernelPolicy.For"/>, and returns its launcher.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <remarks>
    /// The launcher throws <see cref="ArgumentOutOfRangeException"/> for a slot other than −1, 0 or 1,
    /// an expert count outside 1 to <see cref="MaxExperts"/> or a pending record's copies outside
    /// what its slot holds, and <see cref="ArgumentException"/> for state views too short for them,
    /// before anything is enqueued.
    /// </remarks>
    public static RoutingRecordLauncher Create(Accelerator accelerator) => Create(accelerator, RecordKernelPolicy.For(accelerator));

    /// <summary>Loads the kernel once on <paramref name="accelerator"/>, tuned by <paramref name="policy"/>, and returns its launcher.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> or <paramref name="policy"/> is null.</exception>
    /// <exception cref="NotSupportedException">The accelerator cannot run the policy's counting (<see cref="Supports"/> says why).</exception>
    internal static RoutingRecordLauncher Create(Accelerator accelerator, RecordKernelPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(policy);
        if (!Supports(accelerator, policy.Counting, out var reason))
        {
            throw new NotSupportedException(reason);
        }

        return policy.Counting == HistogramCounting.QuadLoadRuns
            ? Create<QuadLoadRunCounting>(accelerator, policy)
            : Create<ThreadRunCounting>(accelerator, policy);
    }

    /// <summary>
    /// The launcher of the kernel with <typeparamref name="TCounting"/> in place of the policy's
    /// counting, loaded once: the device check also times countings that are not a <see cref="HistogramCounting"/>.
    /// </summary>
    internal static RoutingRecordLauncher Create<TCounting>(Accelerator accelerator, RecordKernelPolicy policy)
        where TCounting : struct, IHistogramCounting
    {
        var kernel = Load<TCounting>(accelerator);
        var grid = CountingGrid.For(accelerator, kernel.GetKernel(), policy);
        return (stream, ids, state, arguments, pending) =>
        {
            CheckLaunch(state, arguments, nameof(arguments));
            CheckLaunch(state, pending, nameof(pending));
            if (pending.Slot >= 0 && (pending.Copies < 1 || pending.Copies > MaxCopies || pending.Copies > SlotLength / pending.Experts))
            {
                throw new ArgumentOutOfRangeException(
                    nameof(pending), pending.Copies, $"pending.Copies must be 1 to {MaxCopies} and at most {SlotLength} / pending.Experts: the copies its launch returned.");
            }

            // The folding group takes a place in the one wave. A histogram uploaded into the slot
            // (no ids) is one copy.
            var folding = pending.Slot >= 0 ? 1 : 0;
            var counting = arguments.Slot >= 0 && ids.Length > 0 ? grid.Groups(ids.Length, arguments.Experts, folding) : 0;
            if (counting > 0 && arguments.TopK < 1)
            {
                // The padding check divides positions by k.
                throw new ArgumentOutOfRangeException(nameof(arguments), arguments.TopK, "arguments.TopK must be at least 1 for a record of ids.");
            }

            arguments.Copies = counting > 0 ? grid.Copies(counting, arguments.Experts) : 1;
            arguments.AlignedStart = counting > 0 ? IdAlignment.AlignedStart(accelerator, ids) : 0;
            if (counting + folding > 0)
            {
                kernel(stream, new KernelConfig(counting + folding, grid.GroupSize), ids, state, arguments, pending);
            }

            return arguments;
        };
    }

    /// <summary>The kernel with <typeparamref name="TCounting"/>; on CUDA with launch bounds that keep every group of a full multiprocessor resident.</summary>
    private static Action<AcceleratorStream, KernelConfig, ArrayView<int>, RoutingStateViews, RecordArguments, RecordArguments> Load<TCounting>(Accelerator accelerator)
        where TCounting : struct, IHistogramCounting =>
        accelerator is CudaAccelerator cuda && CudaLaunchBounds.Supported
            ? CudaLaunchBounds.Load(cuda, KernelPtx.RecordKernel<TCounting>(), GroupSize(accelerator))
                .CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, ArrayView<int>, RoutingStateViews, RecordArguments, RecordArguments>>()
            : accelerator.LoadKernel<ArrayView<int>, RoutingStateViews, RecordArguments, RecordArguments>(Kernel<TCounting>);

    /// <summary>
    /// The launcher's checks, on the host and without allocating: a slot the state does not have or an
    /// expert count beyond its arrays would make the kernel write outside them.
    /// </summary>
    private static void CheckLaunch(RoutingStateViews state, RecordArguments record, string name)
    {
        if (record.Slot is < -1 or >= BatchSlots)
        {
            throw new ArgumentOutOfRangeException(name, record.Slot, $"{name}.Slot must be -1 (no record) or a batch slot, 0 to {BatchSlots - 1}.");
        }

        if (record.Slot >= 0 && record.Experts is < 1 or > MaxExperts)
        {
            throw new ArgumentOutOfRangeException(name, record.Experts, $"{name}.Experts must be 1 to {MaxExperts}.");
        }

        if (record.Slot >= 0 && (record.TopK < 0 || record.Tokens < 0))
        {
            throw new ArgumentOutOfRangeException(name, record.TopK, $"{name}.TopK and {name}.Tokens cannot be negative.");
        }

        if (record.Slot >= 0
            && (state.State.Length < 1 || state.BatchHistogram.Length < (long)BatchSlots * SlotLength || state.BatchInvalid.Length < BatchSlots
                || state.BatchPaddedTokens.Length < BatchSlots || state.UtilizationSums.Length < record.Experts
                || state.TokenCounts.Length < record.Experts || state.Utilization.Length < record.Experts
                || state.DecayedUtilization.Length < record.Experts || state.VarianceHistory.Length < VarianceWindow))
        {
            throw new ArgumentException(
                $"The state's views are too short for {record.Experts} experts: one block, {BatchSlots} × {SlotLength} batch counts, {BatchSlots} invalid and padded-token counts, E of each per-expert array, {VarianceWindow} variances.",
                nameof(state));
        }
    }

    /// <summary>Whether <paramref name="accelerator"/> can run <paramref name="counting"/>, and if not, why.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    internal static bool Supports(Accelerator accelerator, HistogramCounting counting, [NotNullWhen(false)] out string? reason)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        reason = counting switch
        {
            HistogramCounting.QuadLoadRuns when accelerator is CudaAccelerator or CPUAccelerator => null,
            HistogramCounting.QuadLoadRuns =>
                $"Quad-load counting runs on CUDA and the CPU accelerator, not on {accelerator.AcceleratorType} ({accelerator.Name}), where its 128-bit loads are unmeasured.",
            _ => null,
        };
        return reason is null;
    }

    /// <summary>Threads per group on <paramref name="accelerator"/>: <see cref="PreferredGroupSize"/> or fewer.</summary>
    internal static int GroupSize(Accelerator accelerator) => Math.Min(PreferredGroupSize, accelerator.MaxNumThreadsPerGroup);
}
