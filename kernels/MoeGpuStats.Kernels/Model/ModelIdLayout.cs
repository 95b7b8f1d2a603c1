namespace MoeGpuStats.Kernels.Model;

/// <summary>
/// Where a model step's ids lie: slot j of token t in layer l at <c>l × layerStride + t × tokenStride + j</c>.
/// The layers lie one after another (<c>[layers, tokens, k]</c>, perhaps cut from a padded buffer)
/// or interleaved, token by token (<c>[tokens, layers, k]</c>, as SGLang's (and some vLLM versions') routed-experts
/// buffers hold them); no two rows share an id either way.
/// </summary>
/// <remarks>
/// The host checks and the launcher share these rules, so that no launch reads past the ids and no
/// id is counted for two layers.
/// </remarks>
internal static class ModelIdLayout
{
    /// <summary>
    /// The ids one layer's rows span, <c>(tokens − 1) × tokenStride + topK</c>: 0 for no token, null
    /// where it passes long's range.
    /// </summary>
    public static long? LayerExtent(long tokens, long topK, long tokenStride) =>
        tokens == 0 ? 0
        : tokens > 1 && tokenStride > (long.MaxValue - topK) / (tokens - 1) ? null
        : ((tokens - 1) * tokenStride) + topK;

    /// <summary>The layer stride of layers packed one after another, <c>tokens × tokenStride</c> (what a layer stride of 0 means); null past long's range.</summary>
    public static long? PackedLayerStride(long tokens, long tokenStride) =>
        tokens == 0 || tokenStride <= long.MaxValue / tokens ? tokens * tokenStride : null;

    /// <summary>
    /// The ids a step reads, <c>(layers − 1) × layerStride + LayerExtent</c>: the last layer starts
    /// layers − 1 strides in (none for one layer, whose stride is never used); 0 for no token, whose step
    /// reads no id whatever the strides (an empty slice of a preallocated buffer). Null where that passes
    /// long's range, which no ids can hold.
    /// </summary>
    public static long? StepExtent(long layers, long layerStride, long tokens, long topK, long tokenStride) =>
        tokens == 0 ? 0
        : LayerExtent(tokens, topK, tokenStride) is not { } layer ? null
        : layers > 1 && layerStride > (long.MaxValue - layer) / (layers - 1) ? null
        : ((layers - 1) * layerStride) + layer;

    /// <summary>
    /// Whether the layers lie one after another (each layer's rows end before the next layer's begin)
    /// or interleaved token by token (each token's layers end before the next token's begin), given
    /// <paramref name="tokenStride"/> ≥ <paramref name="topK"/>: then no two rows share an id. Other
    /// layouts are refused, even those whose rows share none, as no router writes them.
    /// </summary>
    public static bool Supported(long layers, long tokens, long topK, long layerStride, long tokenStride)
    {
        if (layers == 1 || tokens == 0)
        {
            return true;
        }

        if (LayerExtent(tokens, topK, tokenStride) is { } extent && layerStride >= extent)
        {
            return true;
        }

        return layerStride >= topK && layerStride <= (tokenStride - topK) / (layers - 1);
    }

    /// <summary>The position of the <paramref name="index"/>-th id of a layer's rows (token-major, <paramref name="topK"/> per token) from the layer's first id.</summary>
    public static long Offset(long index, int topK, long tokenStride)
    {
        var token = index / topK;
        return (token * tokenStride) + (index - (token * topK));
    }
}
