using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary>
/// Padding in a record's ids: an id of −1 is an empty slot (a padded token, or a slot the router
/// left empty), neither counted nor invalid; a token whose k slots are all −1 is not a token.
/// </summary>
/// <remarks>
/// The countings send −1 to the out-of-range bin with the invalid ids, so healthy routing pays
/// nothing for padding. Only a group whose out-of-range bin is not zero reads its share again, to
/// tell padding from invalid ids and to find the padded tokens: each thread checks the positions it
/// counted, so the group that owns a token's first slot, which saw that −1, finds the token.
/// </remarks>
internal static class Padding
{
    /// <summary>The id of an empty slot.</summary>
    public const int EmptySlot = -1;

    /// <summary>
    /// Adds the id at <paramref name="position"/> to <paramref name="emptySlots"/> when it is −1, and
    /// to <paramref name="paddedTokens"/> the token that starts there when all its slots are −1.
    /// </summary>
    public static void Check(ArrayView<int> ids, long position, int topK, ref int emptySlots, ref int paddedTokens)
    {
        if (ids[position] != EmptySlot)
        {
            return;
        }

        emptySlots++;
        if (position % topK != 0 || position + topK > ids.Length)
        {
            return;
        }

        for (var slot = 1; slot < topK; slot++)
        {
            if (ids[position + slot] != EmptySlot)
            {
                return;
            }
        }

        paddedTokens++;
    }

    /// <summary>
    /// <see cref="Check"/> for one layer's rows of a model step, from <paramref name="first"/> up to
    /// <paramref name="end"/> in <paramref name="ids"/>, <paramref name="tokenStride"/> ids apart:
    /// <paramref name="position"/> counts the layer's ids token by token, <paramref name="topK"/> per token.
    /// </summary>
    public static void CheckRows<TIds>(TIds ids, long first, long end, long position, int topK, long tokenStride, ref int emptySlots, ref int paddedTokens)
        where TIds : struct, Model.IModelIds
    {
        var token = position / topK;
        var slot = position - (token * topK);
        var row = first + (token * tokenStride);
        if (ids[row + slot] != EmptySlot)
        {
            return;
        }

        emptySlots++;
        if (slot != 0 || row + topK > end)
        {
            return;
        }

        for (var other = 1; other < topK; other++)
        {
            if (ids[row + other] != EmptySlot)
            {
                return;
            }
        }

        paddedTokens++;
    }

    /// <summary><see cref="Check"/> at every position a grid-stride counting gives this thread (<see cref="ThreadRunCounting"/>, and the device check's warp-aggregated counting).</summary>
    public static void CheckStrided(ArrayView<int> ids, int topK, int groups, ref int emptySlots, ref int paddedTokens)
    {
        var threads = (long)groups * Group.DimX;
        for (var i = (long)Grid.IdxX * Group.DimX + Group.IdxX; i < ids.Length; i += threads)
        {
            Check(ids, i, topK, ref emptySlots, ref paddedTokens);
        }
    }
}
