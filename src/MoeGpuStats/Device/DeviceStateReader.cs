using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Engines;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Device;

/// <summary>
/// Copies of routing state back to the host on one stream, for a <see cref="DeviceRoutingStats"/> and for a
/// model, counted (<see cref="Copies"/>): a read stages what it returns in a read-back buffer by
/// device-to-device copies (<see cref="Stage"/>, <see cref="StageState"/>), then copies that buffer back once.
/// The caller folds any pending record first; ILGPU's host copies wait for the stream, so every read sees
/// the records enqueued before its staging.
/// </summary>
internal sealed class DeviceStateReader(AcceleratorStream stream)
{
    private int _copies;

    /// <summary>The stream the reads are ordered on.</summary>
    public AcceleratorStream Stream => stream;

    /// <summary>Copies made to the host so far, each a wait for the stream: what reading has cost the host (the tests pin it).</summary>
    public int Copies => Volatile.Read(ref _copies);

    /// <summary>
    /// Runs on the reading thread before each copy to the host, the wait: tests hold a read there to show
    /// what another thread can do meanwhile. Null in the library.
    /// </summary>
    internal Action? BeforeCopy { get; set; }

    /// <summary>Copies <paramref name="view"/> to <paramref name="host"/> (a wait for the stream) and counts it; nothing for no value.</summary>
    public void ToHost<T>(ArrayView<T> view, Span<T> host)
        where T : unmanaged
    {
        if (host.IsEmpty)
        {
            return;
        }

        BeforeCopy?.Invoke();

        // The wait first, then the copy: CUDA copies into pageable memory with the stream held, so a step another
        // thread enqueued meanwhile would wait for the whole queue ahead of the copy (docs/performance.md measures both).
        stream.Synchronize();
        view.CopyToCPU(stream, host);
        Interlocked.Increment(ref _copies);
    }

    /// <summary>The read-back bytes <see cref="StageState"/> stages a state of up to <paramref name="experts"/> experts in.</summary>
    public static long StateBytes(int experts) =>
        Unsafe.SizeOf<RoutingStateBlock>() + ((long)experts * (sizeof(float) + (2 * sizeof(double)) + sizeof(ulong))) + (RoutingStateLayout.VarianceWindow * sizeof(float));

    /// <summary>
    /// Enqueues the copies of the block and of the first <paramref name="experts"/> values of each per-expert
    /// array into <paramref name="readback"/> at <paramref name="offset"/>; returns the offset past them.
    /// </summary>
    public long StageState(RoutingStateViews views, int experts, RoutingStatsOptions options, ArrayView<byte> readback, long offset)
    {
        var decayed = options.UtilizationDecay is null ? 0 : experts;
        Stage(views.State, readback, ref offset);
        Stage(views.Utilization.SubView(0, experts), readback, ref offset);
        Stage(views.UtilizationSums.SubView(0, experts), readback, ref offset);
        Stage(views.DecayedUtilization.SubView(0, decayed), readback, ref offset);
        Stage(views.TokenCounts.SubView(0, experts), readback, ref offset);
        Stage(views.VarianceHistory.SubView(0, RoutingStateLayout.VarianceWindow), readback, ref offset);
        return offset;
    }

    /// <summary>
    /// The state <see cref="StageState"/> staged, from the copied bytes at <paramref name="offset"/> (advanced past it):
    /// of each per-expert array, the block's expert count of values kept (0 before a model's first step, which its
    /// host does not know without a read).
    /// </summary>
    public static RoutingState UnstageState(byte[] bytes, int experts, RoutingStatsOptions options, ref long offset)
    {
        var decayed = options.UtilizationDecay is null ? 0 : experts;
        var block = Unstage<RoutingStateBlock>(bytes, 1, ref offset)[0];
        var held = Math.Min(block.Experts, experts);
        var utilization = Unstage<float>(bytes, experts, ref offset);
        var sums = Unstage<double>(bytes, experts, ref offset);
        var decayedUtilization = Unstage<double>(bytes, decayed, ref offset);
        var counts = Unstage<ulong>(bytes, experts, ref offset);
        var ring = Unstage<float>(bytes, RoutingStateLayout.VarianceWindow, ref offset);
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
        var values = new T[count];
        Unstage<T>(bytes, values, ref offset);
        return values;
    }

    /// <summary>As <see cref="Unstage{T}(byte[], long, ref long)"/>, into <paramref name="values"/>: as many as it holds.</summary>
    public static void Unstage<T>(byte[] bytes, Span<T> values, ref long offset)
        where T : unmanaged
    {
        var length = values.Length * Unsafe.SizeOf<T>();
        MemoryMarshal.Cast<byte, T>(bytes.AsSpan((int)offset, length)).CopyTo(values);
        offset += length;
    }

    /// <summary>A state from its block and arrays copied back (the caller's: the state keeps them; <paramref name="ring"/> is unrolled).</summary>
    public static RoutingState StateOf(RoutingStateBlock block, float[] utilization, double[] sums, double[] decayed, ulong[] counts, ReadOnlySpan<float> ring) =>
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
    public static float[] Unroll(ReadOnlySpan<float> ring, RoutingStateBlock block)
    {
        var history = new float[block.VarianceCount];
        for (var i = 0; i < history.Length; i++)
        {
            history[i] = ring[(block.VarianceHead + i) % ring.Length];
        }

        return history;
    }
}
