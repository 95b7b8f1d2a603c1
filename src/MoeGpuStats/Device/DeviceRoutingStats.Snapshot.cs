using MoeGpuStats.Engines;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Device;

/// <summary>The whole state copied back, as a managed engine.</summary>
public sealed partial class DeviceRoutingStats
{
    /// <summary>One wait for the queued records and one copy of each state array, as a managed <see cref="RoutingStats"/>.</summary>
    public RoutingStats Snapshot() => new(new ManagedRoutingEngine(_options, ReadState()));

    /// <summary>
    /// Every buffer copied back on the stream: the first copy waits for the queued records (ILGPU's
    /// host copies are synchronous), the others only for their own transfer.
    /// </summary>
    internal RoutingState ReadState()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            var experts = _experts;
            Span<RoutingStateBlock> blocks = stackalloc RoutingStateBlock[1];
            var utilization = new float[experts];
            var sums = new double[experts];
            var decayed = new float[_options.UtilizationDecay is null ? 0 : experts];
            var counts = new ulong[experts];
            var ring = new float[RoutingStateLayout.VarianceWindow];
            _state.View.CopyToCPU(Stream, blocks);
            _utilization.View.SubView(0, experts).CopyToCPU(Stream, utilization.AsSpan());
            _utilizationSums.View.SubView(0, experts).CopyToCPU(Stream, sums.AsSpan());
            _decayedUtilization.View.SubView(0, decayed.Length).CopyToCPU(Stream, decayed.AsSpan());
            _tokenCounts.View.SubView(0, experts).CopyToCPU(Stream, counts.AsSpan());
            _varianceHistory.View.CopyToCPU(Stream, ring.AsSpan());

            var block = blocks[0];
            var history = Unroll(ring, block);
            return new RoutingState
            {
                TotalRoutings = block.TotalRoutings,
                TotalTokens = block.TotalTokens,
                TokensDropped = block.TokensDropped,
                InvalidExpertIds = block.InvalidExpertIds,
                RoutedSlots = block.RoutedSlots,
                SlotsDropped = block.SlotsDropped,
                LoadBalanceLossSum = block.LoadBalanceLossSum,
                RouterZLossSum = block.RouterZLossSum,
                AverageLoadBalanceLoss = block.AverageLoadBalanceLoss,
                AverageRouterZLoss = block.AverageRouterZLoss,
                RoutingEfficiency = block.RoutingEfficiency,
                ExpertUtilization = utilization,
                UtilizationSums = sums,
                DecayedExpertUtilization = decayed,
                ExpertTokenCounts = counts,
                LoadVarianceHistory = history,
                CapacityAverageUtilization = block.CapacityAverageUtilization,
                CapacityPeakUtilization = block.CapacityPeakUtilization,
                CapacityExceededCount = block.CapacityExceededCount,
                TotalCapacity = block.TotalCapacity,
                TotalUsed = block.TotalUsed,
            };
        }
    }

    /// <summary>The ring's entries, oldest first.</summary>
    private static float[] Unroll(float[] ring, RoutingStateBlock block)
    {
        var history = new float[block.VarianceCount];
        for (var i = 0; i < history.Length; i++)
        {
            history[i] = ring[(block.VarianceHead + i) % ring.Length];
        }

        return history;
    }
}
