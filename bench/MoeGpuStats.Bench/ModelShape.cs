using System.Globalization;

namespace MoeGpuStats.Bench;

/// <summary>
/// A whole model's step: <c>Layers</c> MoE layers of <c>Experts</c> experts, <c>TopK</c> ids per
/// token, <c>Tokens</c> tokens per layer. Written <c>LxExkxT</c> (58x256x8x256), the form the
/// benchmarks' parameter, the device check's <c>--model-shapes</c> and model_baseline.py share.
/// </summary>
internal readonly record struct ModelShape(int Layers, int Experts, int TopK, int Tokens)
{
    /// <summary>
    /// The shapes: L = 58, E = 256, k = 8 (DeepSeek-V3's MoE layers) at decode batches of
    /// 1, 64, 256 and 1,024 tokens and a prefill of 16,384; L = 32, E = 8, k = 2 (Mixtral) at the same.
    /// </summary>
    public const string Default =
        "58x256x8x1,58x256x8x64,58x256x8x256,58x256x8x1024,58x256x8x16384," +
        "32x8x2x1,32x8x2x64,32x8x2x256,32x8x2x1024,32x8x2x16384";

    /// <summary>Ids per layer.</summary>
    public long LayerIds => (long)Tokens * TopK;

    /// <summary>Ids of the whole step, layers packed.</summary>
    public long StepIds => Layers * LayerIds;

    public static ModelShape Parse(string text)
    {
        var parts = text.Trim().Split('x').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        if (parts.Length != 4 || parts.Any(p => p < 1))
        {
            throw new FormatException($"A model shape is LxExkxT with positive numbers (58x256x8x256); got '{text}'.");
        }

        return new(parts[0], parts[1], parts[2], parts[3]);
    }

    public static ModelShape[] ParseList(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(Parse).ToArray();

    /// <summary>
    /// The step's ids, <c>[layers, tokens, k]</c> packed: torch_baseline.py's skewed data over the
    /// whole flat buffer (id[i] = floor(u_i² × E)), so model_baseline.py builds the same ids.
    /// </summary>
    public int[] Ids() => RoutingIds.Skewed(StepIds, Experts);

    /// <summary>
    /// <paramref name="ids"/> (<c>[layers, tokens, k]</c> packed) laid out <c>[tokens, layers, k]</c>, as
    /// SGLang's (and some vLLM versions') routed-experts buffers hold a step: read at a layer stride of k and a token
    /// stride of layers × k, it records the same counts.
    /// </summary>
    public int[] TokensFirst(int[] ids)
    {
        var laid = new int[ids.Length];
        for (var l = 0; l < Layers; l++)
        {
            for (var t = 0; t < Tokens; t++)
            {
                ids.AsSpan((int)((l * LayerIds) + (t * TopK)), TopK).CopyTo(laid.AsSpan(((t * Layers) + l) * TopK));
            }
        }

        return laid;
    }

    /// <summary>
    /// The checksum model_baseline.py prints: sum over layers l and experts e of
    /// count[l, e] × (l × E + e + 1), over row-major <c>[layers, experts]</c> counts.
    /// </summary>
    public static ulong Checksum(IReadOnlyList<ulong> layerExpertCounts) => RoutingIds.Checksum(layerExpertCounts);

    public override string ToString() => $"{Layers}x{Experts}x{TopK}x{Tokens}";
}
