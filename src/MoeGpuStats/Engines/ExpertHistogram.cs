namespace MoeGpuStats.Engines;

/// <summary>The managed counterpart of the device histogram kernel.</summary>
internal static class ExpertHistogram
{
    /// <summary>The id of an empty slot (a padded token, or a slot the router left empty): neither counted nor invalid.</summary>
    public const int EmptySlot = Kernels.Padding.EmptySlot;

    /// <summary>Adds each id in <c>[0, counts.Length)</c> to its bin; returns how many ids fell outside (−1 included).</summary>
    public static ulong Accumulate(ReadOnlySpan<int> ids, Span<int> counts)
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

        return outside;
    }

    /// <summary>
    /// In one pass over <paramref name="ids"/> (<c>[tokens, topK]</c>), the −1 ids and the tokens whose k ids
    /// are all −1 (padding, not tokens), as the device's <c>Padding.Check</c> finds them.
    /// </summary>
    public static (ulong EmptySlots, int PaddedTokens) Padding(ReadOnlySpan<int> ids, int topK)
    {
        ulong empty = 0;
        var padded = 0;
        for (var start = 0; start + topK <= ids.Length; start += topK)
        {
            var token = (ulong)ids.Slice(start, topK).Count(EmptySlot);
            empty += token;
            padded += token == (ulong)topK ? 1 : 0;
        }

        return (empty, padded);
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
