using ILGPU;
using ILGPU.Runtime.Cuda;
using static ILGPU.IntrinsicMath.BitOperations;

namespace MoeGpuStats.Kernels;

/// <summary>
/// <see cref="HistogramCounting.WarpAggregated"/>: for each id a warp loads, the lowest lane of the
/// lanes holding that id adds their number. The loop bounds depend only on the warp's first index,
/// so all lanes of a warp run every iteration together, as the warp-wide match needs.
/// </summary>
internal readonly struct WarpAggregatedCounting : IHistogramCounting
{
    public int ScratchBins => 0;

    public void CountShare(ArrayView<int> ids, int alignedStart, ArrayView<int> bins, int experts, int groups)
    {
        var lane = Warp.LaneIdx;
        var warpSize = Warp.WarpSize;
        var threads = (long)groups * Group.DimX;

        // One variable receives every match: ILGPU passes an inline-PTX output through local
        // memory, which it zeroes where the variable is declared. Declared here, the zeroing runs
        // once, not once per id (SASS: one local store per id instead of two).
        var peers = 0;
        var first = (long)Grid.IdxX * Group.DimX + Group.IdxX - lane;
        for (; first + 3 * threads + warpSize <= ids.Length; first += 4 * threads)
        {
            var i = first + lane;
            var a = ids[i];
            var b = ids[i + threads];
            var c = ids[i + 2 * threads];
            var d = ids[i + 3 * threads];
            AddPeers(bins, experts, a, warpSize, ref peers);
            AddPeers(bins, experts, b, warpSize, ref peers);
            AddPeers(bins, experts, c, warpSize, ref peers);
            AddPeers(bins, experts, d, warpSize, ref peers);
        }

        for (; first < ids.Length; first += threads)
        {
            // The lanes past the end still take part in the match, with an id nobody counts.
            var lanes = (int)Math.Min(warpSize, ids.Length - first);
            AddPeers(bins, experts, lane < lanes ? ids[first + lane] : 0, lanes, ref peers);
        }
    }

    public void CountPadding(ArrayView<int> ids, int alignedStart, int topK, int groups, ref int emptySlots, ref int paddedTokens) =>
        Padding.CheckStrided(ids, topK, groups, ref emptySlots, ref paddedTokens);

    /// <summary>
    /// Counts <paramref name="id"/> once for the lanes below <paramref name="lanes"/> that hold it, with their number.
    /// <paramref name="peers"/> is the caller's variable for the match (its value on entry is unused).
    /// </summary>
    private static void AddPeers(ArrayView<int> bins, int experts, int id, int lanes, ref int peers)
    {
        var lane = Warp.LaneIdx;
        var counted = lanes >= 32 ? -1 : (1 << lanes) - 1;
        MatchAny(id, out peers);
        peers &= counted;
        if (lane < lanes && lane == TrailingZeroCount(peers))
        {
            Atomic.Add(ref bins[InvalidBin.Of(id, experts)], PopCount(peers));
        }
    }

    /// <summary>The lanes of the warp whose <paramref name="value"/> equals this lane's, as a bit mask.</summary>
    private static void MatchAny(int value, out int mask)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("match.any.sync.b32 %0, %1, 0xffffffff;", out mask, value);
            return;
        }

        mask = 0;
        for (var source = 0; source < Warp.WarpSize; source++)
        {
            if (Warp.Shuffle(value, source) == value)
            {
                mask |= 1 << source;
            }
        }
    }
}
