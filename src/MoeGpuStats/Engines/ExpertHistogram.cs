namespace MoeGpuStats.Engines;

/// <summary>The managed counterpart of the device histogram kernel.</summary>
internal static class ExpertHistogram
{
    /// <summary>Adds each id in <c>[0, counts.Length)</c> to its bin; returns how many ids fell outside.</summary>
    public static ulong Accumulate(ReadOnlySpan<int> ids, Span<int> counts)
    {
        ulong invalid = 0;
        var experts = (uint)counts.Length;
        foreach (var id in ids)
        {
            if ((uint)id < experts)
            {
                counts[id]++;
            }
            else
            {
                invalid++;
            }
        }

        return invalid;
    }

    /// <summary>Slots beyond each expert's capacity, summed and capped at the batch's token count.</summary>
    public static int DroppedSlots(ReadOnlySpan<int> counts, int capacity, int tokens)
    {
        long dropped = 0;
        foreach (var count in counts)
        {
            dropped += Math.Max(0, count - capacity);
        }

        return (int)Math.Min(dropped, tokens);
    }
}
