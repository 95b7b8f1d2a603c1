using System.Text.Json;

namespace MoeGpuStats.Tests.Support;

/// <summary>Random and adversarial model steps, and the single-layer reference they are checked against.</summary>
internal static class ModelSteps
{
    /// <summary>One step: <c>[layers, tokens, k]</c> ids at a stride, the valid rows and per-layer losses.</summary>
    public sealed record Step(int[] Ids, int Tokens, int TopK, int Stride, int Valid, float[] LoadBalanceLosses, float[] RouterZLosses)
    {
        /// <summary>Layer <paramref name="layer"/>'s valid ids.</summary>
        public ReadOnlySpan<int> LayerIds(int layer) => Ids.AsSpan(layer * Stride, Valid * TopK);

        /// <summary>Whether any of <paramref name="layers"/> layers has a valid row that is not k empty slots: the steps <see cref="ModelRoutingStatsOptions.SkipEmptySteps"/> keeps.</summary>
        public bool HoldsToken(int layers)
        {
            for (var l = 0; l < layers; l++)
            {
                var ids = LayerIds(l);
                for (var row = 0; row < ids.Length; row += TopK)
                {
                    if (ids.Slice(row, TopK).ContainsAnyExcept(-1))
                    {
                        return true;
                    }
                }
            }

            return false;
        }
    }

    /// <summary>
    /// Steps of different token counts (some zero), strides with gaps, padding (−1 slots and whole
    /// padded tokens), invalid ids, every token to one expert, and valid counts below the rows.
    /// </summary>
    public static List<Step> Random(int layers, int experts, int topK, int count, int seed)
    {
        var random = new Random(seed);
        var steps = new List<Step>();
        for (var s = 0; s < count; s++)
        {
            var tokens = s % 7 == 3 ? 0 : random.Next(1, 40);
            var stride = tokens * topK + (s % 3 == 0 ? random.Next(0, 5) : 0);
            var valid = s % 4 == 1 ? random.Next(0, tokens + 1) : tokens;
            var ids = new int[layers * stride + 3];
            System.Array.Fill(ids, 12345);   // gaps and padding rows past the valid count must not be read
            var kind = s % 5;
            for (var l = 0; l < layers; l++)
            {
                for (var i = 0; i < tokens * topK; i++)
                {
                    ids[l * stride + i] = kind switch
                    {
                        0 => random.Next(experts),
                        1 => l % experts,   // every token of the layer to one expert
                        2 => random.Next(10) == 0 ? -1 : random.Next(experts),   // empty slots
                        3 => i / topK % 3 == 0 ? -1 : random.Next(experts),   // whole padded tokens
                        _ => random.Next(12) == 0 ? experts + random.Next(3) : random.Next(-2, experts),   // invalid ids
                    };
                }
            }

            var losses = Enumerable.Range(0, layers).Select(_ => (float)random.NextDouble()).ToArray();
            var zLosses = s % 2 == 0 ? Enumerable.Range(0, layers).Select(_ => (float)random.NextDouble() * 3).ToArray() : [];
            steps.Add(new Step(ids, tokens, topK, stride, valid, losses, zLosses));
        }

        return steps;
    }

    /// <summary>A valid expert id where no row lies in <see cref="Laid"/>: a read of it changes the counts.</summary>
    public const int Gap = 1;

    /// <summary>
    /// The step's rows (padding rows past the valid count too) where <paramref name="layerStride"/> and
    /// <paramref name="tokenStride"/> put them, <see cref="Gap"/> everywhere else, three more ids at the end.
    /// </summary>
    public static int[] Laid(Step step, int layers, long layerStride, long tokenStride)
    {
        var extent = (layers - 1) * layerStride + (step.Tokens == 0 ? 0 : (step.Tokens - 1) * tokenStride + step.TopK);
        var ids = new int[extent + 3];
        System.Array.Fill(ids, Gap);
        for (var l = 0; l < layers; l++)
        {
            for (var t = 0; t < step.Tokens; t++)
            {
                step.Ids.AsSpan(l * step.Stride + t * step.TopK, step.TopK).CopyTo(ids.AsSpan((int)(l * layerStride + t * tokenStride)));
            }
        }

        return ids;
    }

    /// <summary>Layer statistics fed each layer's ids alone: what the model's layers must equal.</summary>
    public static RoutingStats[] SingleLayers(ModelRoutingStatsOptions options, IEnumerable<Step> steps)
    {
        var layers = Enumerable.Range(0, options.Layers).Select(_ => new RoutingStats(options.LayerOptions)).ToArray();
        foreach (var step in steps)
        {
            for (var l = 0; l < options.Layers; l++)
            {
                layers[l].RecordRouting(
                    step.LayerIds(l), step.Valid, step.TopK, step.LoadBalanceLosses[l], step.RouterZLosses.Length == 0 ? 0f : step.RouterZLosses[l]);
            }
        }

        return layers;
    }

    /// <summary>Each expert's slots over the last <c>options.Window</c> steps, computed from the ids.</summary>
    public static ulong[] WindowLoad(ModelRoutingStatsOptions options, IReadOnlyList<Step> steps)
    {
        var load = new ulong[options.Layers * options.Experts];
        foreach (var step in steps.Skip(Math.Max(0, steps.Count - options.Window)))
        {
            for (var l = 0; l < options.Layers; l++)
            {
                foreach (var id in step.LayerIds(l))
                {
                    if (id >= 0 && id < options.Experts)
                    {
                        load[l * options.Experts + id]++;
                    }
                }
            }
        }

        return load;
    }

    /// <summary>Every field of a layer's state, the f64 sums included, as text to compare to the bit.</summary>
    public static string Fingerprint(RoutingStats stats)
    {
        var state = stats.ExportState();
        return JsonSerializer.Serialize(stats) + "|" + string.Join(",", (state.UtilizationSums ?? []).Select(BitConverter.DoubleToInt64Bits))
            + "|" + BitConverter.DoubleToInt64Bits(state.LoadBalanceLossSum ?? 0) + "|" + BitConverter.DoubleToInt64Bits(state.RouterZLossSum ?? 0)
            + "|" + string.Join(",", stats.ExpertUtilization.Select(BitConverter.SingleToInt32Bits))
            + "|" + string.Join(",", stats.DecayedExpertUtilization.Select(BitConverter.SingleToInt32Bits))
            + "|" + string.Join(",", stats.LoadVarianceHistory.Select(BitConverter.SingleToInt32Bits))
            + "|" + stats.UtilizationCv() + "|" + stats.MostUtilizedExpert() + "|" + stats.LeastUtilizedExpert() + "|" + stats.RecentLoadVarianceTrend(10);
    }

    /// <summary>Every layer and the window, as text.</summary>
    public static string Fingerprint(ModelRoutingStats model) =>
        string.Join("\n", Enumerable.Range(0, model.Layers).Select(l => Fingerprint(model.Layer(l)))) + "\n" + string.Join(",", model.WindowLoad());
}
