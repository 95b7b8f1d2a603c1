namespace MoeGpuStats.Bench;

/// <summary>The routing data of bench/torch/torch_baseline.py, so counts and checksums compare.</summary>
internal static class RoutingIds
{
    /// <summary>id[i] = floor(u_i^2 * E), u_i = ((i * 2654435761) mod 2^32) / 2^32 in float64: a skewed, deterministic load.</summary>
    public static int[] Skewed(long length, int experts)
    {
        var ids = new int[length];
        for (long i = 0; i < length; i++)
        {
            var u = (double)(uint)(i * 2654435761L) / 4294967296.0;
            ids[i] = (int)Math.Floor(u * u * experts);
        }

        return ids;
    }

    /// <summary>A share of the ids (spread through the batch) to expert 0, the rest uniform over all experts.</summary>
    public static int[] Hot(long length, int experts, double share)
    {
        var ids = new int[length];
        for (long i = 0; i < length; i++)
        {
            var u = (double)(uint)(i * 2654435761L) / 4294967296.0;
            var v = (double)(uint)((ulong)(i + 1) * 0xD1B54A32D192ED03UL >> 32) / 4294967296.0;
            ids[i] = v < share ? 0 : (int)(u * experts);
        }

        return ids;
    }

    /// <summary>
    /// A collapsed top-k router: every token sent to experts 0..k-1. In the same order each time, a
    /// thread whose stride is a multiple of k sees one expert only; with the order turned by a
    /// per-token amount, consecutive ids of a thread differ and a warp's lanes share k bins.
    /// </summary>
    public static int[] Collapsed(long length, int topK, bool orderVaries)
    {
        var ids = new int[length];
        for (long i = 0; i < length; i++)
        {
            var token = i / topK;
            var turn = orderVaries ? (long)((ulong)(token + 1) * 0xD1B54A32D192ED03UL >> 40) : 0;
            ids[i] = (int)((i % topK + turn) % topK);
        }

        return ids;
    }

    /// <summary>The baseline's checksum: sum over experts of count * (e + 1).</summary>
    public static ulong Checksum(IReadOnlyList<ulong> counts)
    {
        ulong sum = 0;
        for (var e = 0; e < counts.Count; e++)
        {
            sum += counts[e] * (ulong)(e + 1);
        }

        return sum;
    }
}
