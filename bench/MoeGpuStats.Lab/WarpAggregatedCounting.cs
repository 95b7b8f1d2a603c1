using System.Diagnostics.CodeAnalysis;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Kernels;
using static ILGPU.IntrinsicMath.BitOperations;

namespace MoeGpuStats.Lab;

/// <summary>
/// Warp aggregation: for each id a warp loads, the lowest lane of the lanes holding that id adds
/// their number (CUDA's <c>match.any</c>, sm_70 or newer; emulated with shuffles on the CPU
/// accelerator). A few hot experts that alternate (all tokens sent to the same k experts) cost one
/// atomic per hot expert per warp step instead of one per id. The loop bounds depend only on the
/// warp's first index, so all lanes of a warp run every iteration together, as the warp-wide match needs.
/// </summary>
/// <remarks>
/// Not in the library: slower than <see cref="HistogramCounting.ThreadRuns"/> on every load measured
/// on an H200 and an H100 (about 5–6× on uniform ids): each id pays a match and a local store
/// (docs/performance.md).
/// </remarks>
internal readonly struct WarpAggregatedCounting : IHistogramCounting
{
    /// <summary>Whether <paramref name="accelerator"/> can aggregate warps in the record kernel's groups, and if not, why.</summary>
    public static bool Supports(Accelerator accelerator, [NotNullWhen(false)] out string? reason)
    {
        var groupSize = RoutingRecordKernel.GroupSize(accelerator);
        reason = accelerator switch
        {
            CudaAccelerator { Architecture: { } sm } when sm.Major < 7 =>
                $"Warp-aggregated counting needs match.any (sm_70 or newer); {accelerator.Name} is {sm}.",
            CudaAccelerator or CPUAccelerator when groupSize % accelerator.WarpSize != 0 =>
                $"Warp-aggregated counting needs whole warps: groups of {groupSize} threads on {accelerator.Name}, warps of {accelerator.WarpSize}.",
            CudaAccelerator or CPUAccelerator => null,
            _ => $"Warp-aggregated counting runs on CUDA and the CPU accelerator, not on {accelerator.AcceleratorType} ({accelerator.Name}).",
        };
        return reason is null;
    }

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
