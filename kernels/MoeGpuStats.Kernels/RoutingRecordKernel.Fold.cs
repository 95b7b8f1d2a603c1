using ILGPU;
using static MoeGpuStats.Kernels.RoutingStateLayout;
using static MoeGpuStats.Kernels.UnfusedMath;

namespace MoeGpuStats.Kernels;

/// <summary>The record kernel's folding group: the previous record into the running state.</summary>
internal static partial class RoutingRecordKernel
{
    /// <summary>Folds the record counted into <paramref name="arguments"/>' batch buffer into the state, and clears the buffer.</summary>
    /// <remarks>
    /// The batch counts are kept as float bits in <paramref name="bins"/>, the shared histogram that a
    /// folding group does not count into: one 16 KiB array per group instead of two lets a
    /// multiprocessor hold all the groups it can run.
    /// </remarks>
    internal static void Fold(RoutingStateViews state, RecordArguments arguments, ArrayView<int> bins, ArrayView<long> partials)
    {
        var thread = Group.IdxX;
        var groupSize = Group.DimX;
        var experts = arguments.Experts;
        // An index, not a sub-view: the sub-view's base pointer held across the loop took a 33rd register.
        var first = arguments.Buffer * BufferLength;
        // One field here (the expert count) and the block staged in shared memory below: a copy of the whole block
        // held across this loop cost 20 registers per thread (52 instead of 32 on sm_90), which
        // halved the groups a multiprocessor holds.
        var resize = state.State[0].Experts != experts;
        // The seed's running means (alpha = 1 / n in f32) stall once 1 - 1/n rounds to 1; f64 sums of
        // the seed's f32 shares over n give the same means without drift. The batch's tokens and n are
        // read again per expert rather than kept: with them held in registers across this loop the
        // kernel spilled on sm_90 (20 bytes at 32 registers).
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
            var tokens = arguments.Tokens - (int)state.BatchPaddedTokens[arguments.Buffer];
            float share = tokens > 0 ? count / (float)tokens : 0f;
            bins[e] = (int)Interop.FloatAsInt((float)count);
            shareSum = (resize ? 0.0 : shareSum) + share;
            state.UtilizationSums[e] = shareSum;
            state.Utilization[e] = (float)(shareSum / (state.State[0].TotalRoutings + 1));
            state.TokenCounts[e] = (resize ? 0UL : tokenCount) + (ulong)count;
            if (decay >= 0f)
            {
                state.DecayedUtilization[e] = Mul((double)decay, resize ? 0.0 : state.DecayedUtilization[e]) + Mul(1.0 - decay, share);
            }

            partialSum += count;
            if (arguments.ExpertCapacity > 0 && count > arguments.ExpertCapacity)
            {
                partialOverflow += count - arguments.ExpertCapacity;
            }
        }

        var batchSum = GroupReduction.Sum(partialSum, partials);
        var overflow = arguments.ExpertCapacity > 0 ? GroupReduction.Sum(partialOverflow, partials) : 0L;
        // The group sums' entries are free now. They take the block (loaded by as many threads at once,
        // for one thread to update there: updated in place in global memory, each of its
        // read-modify-writes waited for a round trip, a load after a store waiting for the store as
        // the compiler must assume they alias, about eight in a row), then the batch's invalid
        // count, the variance's ring position and the variance.
        var blockWords = Interop.SizeOf<RoutingStateBlock>() / sizeof(long);   // whole: the block holds ulongs, so its size is a multiple of 8
        var invalidAt = blockWords;
        var ringPositionAt = blockWords + 1;
        var varianceAt = blockWords + 2;
        var stored = state.State.Cast<long>();
        for (var i = thread; i <= invalidAt; i += groupSize)
        {
            partials[i] = i < blockWords ? stored[i] : (long)Atomic.Exchange(ref state.BatchInvalid[arguments.Buffer], 0UL);
        }

        // The squares in parallel, the sum by one thread in expert order (the seed's rounding).
        var mean = (float)batchSum / experts;
        for (var e = thread; e < experts; e += groupSize)
        {
            var diff = Interop.IntAsFloat((uint)bins[e]) - mean;
            bins[e] = (int)Interop.FloatAsInt(Mul(diff, diff));
        }

        Group.Barrier();

        // The variance's in-order sum and the block's update meet only at the ring position: two threads
        // in different warps run them at once.
        if (thread == 0)
        {
            partials[varianceAt] = Interop.FloatAsInt(InOrderReduction.Sum(bins.Cast<float>(), experts) / experts);
        }

        if (thread == GroupRoles.FirstThreadOfWarp(1, groupSize))
        {
            var tokens = arguments.Tokens - (int)state.BatchPaddedTokens[arguments.Buffer];
            partials[ringPositionAt] = UpdateBlock(ref partials.Cast<RoutingStateBlock>()[0], arguments, tokens, batchSum, overflow, (ulong)partials[invalidAt]);
        }

        Group.Barrier();
        for (var i = thread; i < blockWords; i += groupSize)
        {
            stored[i] = partials[i];
        }

        // Every reader of the padded tokens is past the barrier: the buffer's count is free again.
        if (thread == 0)
        {
            state.BatchPaddedTokens[arguments.Buffer] = 0UL;
        }

        // Only a block that no record kernel wrote holds a ring position outside the ring: its
        // variance is dropped rather than written out of bounds.
        var ringPosition = partials[ringPositionAt];
        if (thread == 0 && (ulong)ringPosition < VarianceWindow)
        {
            state.VarianceHistory[(int)ringPosition] = Interop.IntAsFloat((uint)partials[varianceAt]);
        }
    }

    /// <summary>
    /// The count at <paramref name="at"/> summed over the <paramref name="copies"/> copies of the
    /// histogram, <paramref name="stride"/> apart, each left zero: four loads in flight at a time,
    /// then their stores. Not atomic exchanges: ILGPU's generic-address exchange branches on whether
    /// the address was global, which waits for each exchange in turn (SASS); no other group touches
    /// a buffer while it is folded.
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

    /// <summary>The block's totals, averages and ring position after the batch; returns the ring position of the batch's variance.</summary>
    /// <remarks>
    /// Dropped and kept are counted in the record's units: token-expert slots for top-k ids
    /// (<see cref="RecordArguments.TopK"/> ≥ 1), where a capacity drops slots, not whole tokens;
    /// tokens for a histogram the caller counted (<see cref="RecordArguments.TopK"/> 0), as the seed counts them.
    /// </remarks>
    private static int UpdateBlock(ref RoutingStateBlock block, RecordArguments arguments, int tokens, long batchSum, long overflow, ulong invalid)
    {
        var routings = (double)(block.TotalRoutings + 1);
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
        // Padding rows are not tokens, so none of them is dropped: the drops count up to the batch's real tokens.
        block.TokensDropped += capacity ? 0UL : (ulong)(explicitDropped < tokens ? explicitDropped : tokens);
        block.RoutedSlots += (ulong)routed;
        block.SlotsDropped += (ulong)droppedSlots;
        block.InvalidExpertIds += invalid;
        block.LoadBalanceLossSum += arguments.LoadBalanceLoss;
        block.RouterZLossSum += arguments.RouterZLoss;
        block.AverageLoadBalanceLoss = LossMean.Of(block.LoadBalanceLossSum, routings);
        block.AverageRouterZLoss = LossMean.Of(block.RouterZLossSum, routings);
        if (block.RoutedSlots > 0)
        {
            block.RoutingEfficiency = Mul((float)(block.RoutedSlots - block.SlotsDropped) / block.RoutedSlots, 100.0f);
        }

        block.Experts = experts;

        var head = block.VarianceHead;
        var filled = block.VarianceCount;
        var ringPosition = head + filled;
        if (ringPosition >= VarianceWindow)
        {
            ringPosition -= VarianceWindow;
        }

        if (filled < VarianceWindow)
        {
            block.VarianceCount = filled + 1;
        }
        else
        {
            block.VarianceHead = head + 1 == VarianceWindow ? 0 : head + 1;
        }

        // A record of ids uses the slots it keeps, whoever dropped the others (its capacity, or the caller); a decision's
        // counts are the seed's used slots whatever it drops.
        var kept = fromIds ? batchSum - droppedSlots : batchSum;
        var current = kept / Mul(experts, arguments.SlotsPerExpert);
        var capacityAlpha = 0.1f;
        block.CapacityAverageUtilization = Mul(capacityAlpha, current) + Mul(1.0f - capacityAlpha, block.CapacityAverageUtilization);
        block.CapacityPeakUtilization = current > block.CapacityPeakUtilization ? current : block.CapacityPeakUtilization;
        if (droppedSlots > 0)
        {
            block.CapacityExceededCount++;
        }

        block.TotalUsed = StoppedCount.Add(block.TotalUsed, (ulong)kept);
        block.TotalCapacity = StoppedCount.Add(block.TotalCapacity, (ulong)experts * (ulong)arguments.SlotsPerExpert);
        return ringPosition;
    }
}
