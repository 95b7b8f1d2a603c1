using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Engines;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Device;

/// <summary>
/// Copies of routing state's device views back to the host on one stream, for a <see cref="DeviceRoutingStats"/>
/// and for each layer of a model, counted (<see cref="Copies"/>). The caller folds any pending record first
/// and serializes calls; ILGPU's host copies wait for the stream, so every read sees the records enqueued before it.
/// </summary>
internal sealed class DeviceStateReader(AcceleratorStream stream)
{
    /// <summary>Copies made to the host so far, each a wait for the stream: what reading has cost the host (the tests pin it).</summary>
    public int Copies { get; private set; }

    /// <summary>Copies <paramref name="view"/> to <paramref name="host"/> (a wait for the stream) and counts it; nothing for no value.</summary>
    public void ToHost<T>(ArrayView<T> view, Span<T> host)
        where T : unmanaged
    {
        if (host.IsEmpty)
        {
            return;
        }

        view.CopyToCPU(stream, host);
        Copies++;
    }

    public RoutingStateBlock ReadBlock(RoutingStateViews views)
    {
        Span<RoutingStateBlock> block = stackalloc RoutingStateBlock[1];
        ToHost(views.State, block);
        return block[0];
    }

    /// <summary>The first <paramref name="experts"/> utilizations, or the decayed ones (empty when <paramref name="options"/> has no decay).</summary>
    public float[] ReadUtilization(RoutingStateViews views, int experts, RoutingStatsOptions options, bool decayed)
    {
        if (decayed && options.UtilizationDecay is null)
        {
            return [];
        }

        var values = new float[experts];
        ToHost((decayed ? views.DecayedUtilization : views.Utilization).SubView(0, experts), values);
        return values;
    }

    public ulong[] ReadTokenCounts(RoutingStateViews views, int experts)
    {
        var values = new ulong[experts];
        ToHost(views.TokenCounts.SubView(0, experts), values);
        return values;
    }

    /// <summary>The variance ring's entries, oldest first (the block and the ring copied).</summary>
    public float[] ReadVarianceHistory(RoutingStateViews views)
    {
        var ring = new float[RoutingStateLayout.VarianceWindow];
        var block = ReadBlock(views);
        ToHost(views.VarianceHistory.SubView(0, ring.Length), ring);
        return Unroll(ring, block);
    }

    /// <summary>Launches the query and copies its result back.</summary>
    public UtilizationQueryResult Query(RoutingStateViews views, int window, UtilizationQueryLauncher query, ArrayView<UtilizationQueryResult> result)
    {
        query(stream, views, window, result);
        Span<UtilizationQueryResult> host = stackalloc UtilizationQueryResult[1];
        ToHost(result, host);
        return host[0];
    }

    /// <summary>Every array of the state copied back (the first copy waits for the queued work).</summary>
    public RoutingState ReadState(RoutingStateViews views, int experts, RoutingStatsOptions options)
    {
        var utilization = new float[experts];
        var sums = new double[experts];
        var decayed = new float[options.UtilizationDecay is null ? 0 : experts];
        var counts = new ulong[experts];
        var ring = new float[RoutingStateLayout.VarianceWindow];
        var block = ReadBlock(views);
        ToHost(views.Utilization.SubView(0, experts), utilization);
        ToHost(views.UtilizationSums.SubView(0, experts), sums);
        ToHost(views.DecayedUtilization.SubView(0, decayed.Length), decayed);
        ToHost(views.TokenCounts.SubView(0, experts), counts);
        ToHost(views.VarianceHistory.SubView(0, ring.Length), ring);
        return StateOf(block, utilization, sums, decayed, counts, ring);
    }

    /// <summary>A state from its block and arrays copied back (the caller's: the state keeps them; <paramref name="ring"/> is unrolled).</summary>
    public static RoutingState StateOf(RoutingStateBlock block, float[] utilization, double[] sums, float[] decayed, ulong[] counts, ReadOnlySpan<float> ring) =>
        new()
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
            LoadVarianceHistory = Unroll(ring, block),
            CapacityAverageUtilization = block.CapacityAverageUtilization,
            CapacityPeakUtilization = block.CapacityPeakUtilization,
            CapacityExceededCount = block.CapacityExceededCount,
            TotalCapacity = block.TotalCapacity,
            TotalUsed = block.TotalUsed,
        };

    /// <summary>The ring's entries, oldest first.</summary>
    private static float[] Unroll(ReadOnlySpan<float> ring, RoutingStateBlock block)
    {
        var history = new float[block.VarianceCount];
        for (var i = 0; i < history.Length; i++)
        {
            history[i] = ring[(block.VarianceHead + i) % ring.Length];
        }

        return history;
    }
}
