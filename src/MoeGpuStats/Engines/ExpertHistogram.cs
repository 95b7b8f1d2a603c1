namespace MoeGpuStats.Engines;

/// <summary>The managed counterpart of the device histogram kernel.</summary>
internal static class ExpertHistogram
{
    /// <summary>The id of an empty slot (a padded token, or a slot the router left empty): neither counted nor invalid.</summary>
    public const int EmptySlot = -1;

    /// <summary>
    /// Adds each id in <c>[0, counts.Length)</c> to its bin; returns how many ids were −1 (empty slots)
    /// and how many fell outside otherwise (invalid).
    /// </summary>
    public static (ulong Invalid, ulong EmptySlots) Accumulate(ReadOnlySpan<int> ids, Span<int> counts)
    {
        ulong outside = 0;
        var experts = (uint)counts.Length;
        foreach (var id in ids)
        {
            if ((uint)id < experts)
            {
                counts[id]++;
            }
            else
            {
                outside++;
            }
        }

        if (outside == 0)
        {
            return (0, 0);
        }

        var empty = (ulong)ids.Count(EmptySlot);
        return (outside - empty, empty);
    }

    /// <summary>The tokens of <paramref name="ids"/> (<c>[tokens, topK]</c>) whose k slots are all empty: padding, not tokens.</summary>
    public static int PaddedTokens(ReadOnlySpan<int> ids, int topK)
    {
        var padded = 0;
        for (var start = 0; start + topK <= ids.Length; start += topK)
        {
            if (ids.Slice(start, topK).IndexOfAnyExcept(EmptySlot) < 0)
            {
                padded++;
            }
        }

        return padded;
    }

    /// <summary>Slots beyond each expert's <paramref name="capacity"/>, summed: the token-expert slots a capacity drops.</summary>
    public static long DroppedSlots(ReadOnlySpan<int> counts, int capacity)
    {
        long dropped = 0;
        foreach (var count in counts)
        {
            dropped += Math.Max(0, count - capacity);
        }

        return dropped;
    }
}
