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

    /// <exception cref="FormatException">
    /// <paramref name="text"/> is not four positive whole numbers joined by x, or a model of the shape cannot be built
    /// (layers or experts out of <see cref="ModelRoutingStatsOptions"/>' range, its default window's ring too long) or
    /// its step's ids do not fit one array.
    /// </exception>
    public static ModelShape Parse(string text)
    {
        var numbers = text.Trim().Split('x')
            .Select(part => int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var number) ? number : 0)
            .ToArray();
        if (numbers.Length != 4 || numbers.Contains(0))
        {
            throw new FormatException($"A model shape is LxExkxT with positive whole numbers (58x256x8x256); got '{text}'.");
        }

        // The bench's models keep the default window, whose ring holds Window × L × E counts.
        var window = new ModelRoutingStatsOptions().Window;
        var shape = new ModelShape(numbers[0], numbers[1], numbers[2], numbers[3]);
        var fits = shape.Layers <= ModelRoutingStatsOptions.MaxLayers
            && shape.Experts <= RoutingStatsOptions.MaxDeviceExperts
            && (long)window * shape.Layers * shape.Experts <= ModelRoutingStatsOptions.MaxWindowEntries
            && shape.LayerIds <= Array.MaxLength // first: L × k × T of a larger T × k can pass a long
            && shape.StepIds <= Array.MaxLength;
        return fits
            ? shape
            : throw new FormatException(string.Create(
                CultureInfo.InvariantCulture,
                $"Model shape '{text}' is out of range: L is 1 to {ModelRoutingStatsOptions.MaxLayers:N0}, E 1 to {RoutingStatsOptions.MaxDeviceExperts:N0}, L × E at most {ModelRoutingStatsOptions.MaxWindowEntries / window:N0} (a window of {window:N0} steps), and L × k × T at most {Array.MaxLength:N0}."));
    }

    /// <summary>The comma-separated shapes of <paramref name="text"/>, at least one.</summary>
    /// <exception cref="FormatException">The list is empty, or a shape does not parse (<see cref="Parse"/>).</exception>
    public static ModelShape[] ParseList(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries) is { Length: > 0 } entries
            ? [.. entries.Select(Parse)]
            : throw new FormatException($"A list of model shapes is LxExkxT entries joined by commas (58x256x8x1,32x8x2x64); got '{text}'.");

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
