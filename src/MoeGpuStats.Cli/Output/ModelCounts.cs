namespace MoeGpuStats.Cli.Output;

/// <summary>
/// A model's counts summed over its layers since the start, beside its balance in the report: the
/// slots routed, the ids that named no expert (a wrong <c>--experts</c> shows here first), and the
/// slots a capacity dropped. Summed in 128 bits: 1,024 layers of counts up to 2^63 − 1 each pass 2^64.
/// </summary>
/// <param name="Layers">Per layer, its counts since the start.</param>
/// <param name="Capacity">Slots per expert per step, or null for none.</param>
/// <param name="WindowHoldsAll">
/// Whether the window's load is all the load since the start (the window's and the since-start sums
/// are equal): while the window holds every step; in a merge of ranks that each did (their window
/// steps overlap, so the merged window counts fewer steps than the merged run while it holds all of
/// its load); and in a run whose steps that left the window routed nothing (the two spans' balance is
/// then the same, so one is printed).
/// </param>
/// <param name="MergedParts">The recordings the model combines (<see cref="ModelRoutingStats.MergedParts"/>): above 1, its steps are theirs summed and its window their newest steps added up.</param>
internal sealed record ModelCounts(IReadOnlyList<LayerCounts> Layers, int? Capacity, bool WindowHoldsAll, int MergedParts)
{
    /// <summary>The fewest and the most tokens a layer recorded, padding left out (a trace's rows count padding too).</summary>
    public (ulong Fewest, ulong Most) Tokens => Layers.Count == 0 ? (0, 0) : (Layers.Min(layer => layer.Tokens), Layers.Max(layer => layer.Tokens));

    /// <summary>Ids outside <c>[0, experts)</c> other than −1 (padding), over all layers.</summary>
    public UInt128 InvalidExpertIds => Layers.Aggregate(UInt128.Zero, (sum, layer) => sum + layer.InvalidExpertIds);

    /// <summary>Token-expert slots routed to a valid expert, over all layers.</summary>
    public UInt128 RoutedSlots => Layers.Aggregate(UInt128.Zero, (sum, layer) => sum + layer.RoutedSlots);

    /// <summary>Routed slots over the expert capacity, over all layers; 0 without one.</summary>
    public UInt128 SlotsDropped => Layers.Aggregate(UInt128.Zero, (sum, layer) => sum + layer.SlotsDropped);

    public static ModelCounts Of(ModelRoutingStats model)
    {
        UInt128 sinceStart = 0;
        var layers = new LayerCounts[model.Layers];
        for (var l = 0; l < model.Layers; l++)
        {
            using var layer = model.Layer(l);
            layers[l] = new LayerCounts(layer.TotalTokens, layer.RoutedSlots, layer.InvalidExpertIds, layer.SlotsDropped);
            foreach (var count in layer.ExpertTokenCounts)
            {
                sinceStart += count;
            }
        }

        // Each window load is at most its count since the start, so equal sums mean equal loads.
        var window = model.WindowLoad().Aggregate(UInt128.Zero, (sum, load) => sum + load);
        return new ModelCounts(layers, model.Options.ExpertCapacity, window == sinceStart, model.MergedParts);
    }

    /// <summary>A warning for standard error when ids named no expert, or null.</summary>
    public string? Warning(int experts) => InvalidWarning(InvalidExpertIds, RoutedSlots, experts);

    /// <summary>The warning for <paramref name="invalid"/> ids that named no expert beside <paramref name="routed"/> slots, or null when none did: a model's or one layer's.</summary>
    public static string? InvalidWarning(UInt128 invalid, UInt128 routed, int experts) => invalid == 0
        ? null
        : $"warning: {Counted.OfSum(invalid, "id")} ({Percent(invalid, invalid + routed)} of the ids other than -1) named no expert in [0, {experts:N0}) and count as invalid, in no expert's load: is --experts right?";

    public static string Percent(UInt128 part, UInt128 whole) =>
        whole == 0 ? "0 %"
        : part > 0 && 100.0 * (double)part / (double)whole < 0.005 ? "< 0.01 %"
        : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{100.0 * (double)part / (double)whole:0.##} %");
}

/// <summary>One layer's counts since the start.</summary>
/// <param name="Tokens">Tokens recorded, padding left out.</param>
/// <param name="RoutedSlots">Token-expert slots routed to a valid expert.</param>
/// <param name="InvalidExpertIds">Ids outside <c>[0, experts)</c> other than −1 (padding).</param>
/// <param name="SlotsDropped">Routed slots over the expert capacity; 0 without one.</param>
internal readonly record struct LayerCounts(ulong Tokens, ulong RoutedSlots, ulong InvalidExpertIds, ulong SlotsDropped);
