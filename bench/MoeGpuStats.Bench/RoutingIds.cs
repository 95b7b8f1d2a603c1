namespace MoeGpuStats.Bench;

/// <summary>The routing data of ../shared/device/torch_baseline.py, so counts and checksums compare.</summary>
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
