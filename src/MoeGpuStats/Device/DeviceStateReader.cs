using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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

    /// <summary>The read-back bytes <see cref="ReadState"/> stages a state of up to <paramref name="experts"/> experts in.</summary>
    public static long StateBytes(int experts) =>
        Unsafe.SizeOf<RoutingStateBlock>() + ((long)experts * ((2 * sizeof(float)) + sizeof(double) + sizeof(ulong))) + (RoutingStateLayout.VarianceWindow * sizeof(float));

    /// <summary>
    /// Every array of the state, staged in <paramref name="readback"/> (at least <see cref="StateBytes"/>
    /// bytes) by device-to-device copies and copied back at once: one wait. The first <paramref name="experts"/>
    /// values of each per-expert array are staged, and the block's expert count of them kept (0 before a
    /// model's first step, which its host does not know without a read).
    /// </summary>
    public RoutingState ReadState(RoutingStateViews views, int experts, RoutingStatsOptions options, ArrayView<byte> readback)
    {
        var decayed = options.UtilizationDecay is null ? 0 : experts;
        var staged = 0L;
        Stage(views.State, readback, ref staged);
        Stage(views.Utilization.SubView(0, experts), readback, ref staged);
        Stage(views.UtilizationSums.SubView(0, experts), readback, ref staged);
        Stage(views.DecayedUtilization.SubView(0, decayed), readback, ref staged);
        Stage(views.TokenCounts.SubView(0, experts), readback, ref staged);
        Stage(views.VarianceHistory.SubView(0, RoutingStateLayout.VarianceWindow), readback, ref staged);
        var bytes = new byte[staged];
        ToHost(readback.SubView(0, staged), bytes);
        var read = 0L;
        var block = Unstage<RoutingStateBlock>(bytes, 1, ref read)[0];
        var held = Math.Min(block.Experts, experts);
        var utilization = Unstage<float>(bytes, experts, ref read);
        var sums = Unstage<double>(bytes, experts, ref read);
        var decayedUtilization = Unstage<float>(bytes, decayed, ref read);
        var counts = Unstage<ulong>(bytes, experts, ref read);
        var ring = Unstage<float>(bytes, RoutingStateLayout.VarianceWindow, ref read);
        return StateOf(block, utilization[..held], sums[..held], decayed == 0 ? [] : decayedUtilization[..held], counts[..held], ring);
    }

    /// <summary>
    /// Enqueues a device-to-device copy of <paramref name="view"/> into <paramref name="readback"/> at
    /// <paramref name="offset"/>, which it advances; nothing for an empty view.
    /// </summary>
    public void Stage<T>(ArrayView<T> view, ArrayView<byte> readback, ref long offset)
        where T : unmanaged
    {
        if (view.Length == 0)
        {
            return;
        }

        var bytes = view.Cast<byte>();
        bytes.CopyTo(stream, readback.SubView(offset, bytes.Length));
        offset += bytes.Length;
    }

    /// <summary>The <paramref name="count"/> values of <typeparamref name="T"/> staged at <paramref name="offset"/> of the copied bytes, which it advances.</summary>
    public static T[] Unstage<T>(byte[] bytes, long count, ref long offset)
        where T : unmanaged
    {
        var length = (int)(count * Unsafe.SizeOf<T>());
        var values = MemoryMarshal.Cast<byte, T>(bytes.AsSpan((int)offset, length)).ToArray();
        offset += length;
        return values;
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
