using static System.FormattableString;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// The model report's checks: the conditions the alerting rules in <c>docs/monitoring/moegpustats-alerts.yml</c>
/// watch (an overloaded expert, dead experts, dropped slots, invalid ids), judged once over the report's
/// window at the rules' starting thresholds, so that a report says whether anything needs a look.
/// </summary>
/// <remarks>
/// As the rules do, the load checks leave out a window where each expert averages fewer than
/// <see cref="MinMeanLoad"/> slots: there a few tokens to one expert pass the threshold by chance.
/// </remarks>
internal static class ModelChecks
{
    /// <summary>MoeExpertOverloaded: the busiest expert's load over the layer's mean.</summary>
    public const double OverloadedMaxMean = 5;

    /// <summary>The fewest slots per expert in the window for the load checks (the rules' <c>window_mean_expert_load &lt; 20</c>).</summary>
    public const double MinMeanLoad = 20;

    /// <summary>MoeSlotsDropped: the share of routed slots a capacity may drop.</summary>
    public const double DroppedShare = 0.01;

    /// <summary>The most layers a check names; the rest are counted.</summary>
    private const int NamedLayers = 10;

    /// <summary>The checks' report lines: label, value, note.</summary>
    /// <param name="window">The model's balance over the window.</param>
    /// <param name="counts">Its counts since the start.</param>
    public static IEnumerable<(string Label, string Value, string Note)> Of(BalanceSummary window, ModelCounts counts)
    {
        var layers = window.Layers;
        var meanLoad = layers.Count == 0 ? 0 : layers.Average(layer => layer.MeanLoad);
        const string Overloaded = "busiest expert over 5 x the mean";
        const string Dead = "experts without a token";
        if (meanLoad < MinMeanLoad)
        {
            var why = Invariant($"not judged: each expert averages {meanLoad:0.#} slots in the window, under {MinMeanLoad:0}, too few to tell chance from imbalance");
            yield return (Overloaded, "-", why);
            yield return (Dead, "-", why);
        }
        else
        {
            var overloaded = Matching(layers, layer => layer.MaxMeanRatio > OverloadedMaxMean);
            var worst = Enumerable.Range(0, layers.Count).MaxBy(l => layers[l].MaxMeanRatio);
            yield return (Overloaded, Found(overloaded), overloaded.Count == 0 ? "" : Invariant($"{Named(overloaded)}; the most {layers[worst].MaxMeanRatio:0.00} x, layer {worst}"));
            var dead = Matching(layers, layer => layer.DeadExperts > 0);
            yield return (Dead, Found(dead), dead.Count == 0 ? "" : Invariant($"{Named(dead)}; {Counted.Of(dead.Sum(l => (long)layers[l].DeadExperts), "expert")} in all"));
        }

        if (counts.Capacity is not null)
        {
            var over = counts.RoutedSlots > 0 && counts.SlotsDropped > DroppedShare * counts.RoutedSlots;
            yield return ("over 1 % of slots dropped", over ? "yes" : "no", $"{ModelCounts.Percent(counts.SlotsDropped, counts.RoutedSlots)} of routed slots");
        }

        yield return ("ids naming no expert", counts.InvalidExpertIds == 0 ? "none" : Invariant($"{counts.InvalidExpertIds:N0}"), counts.InvalidExpertIds == 0 ? "" : "the router or --experts is wrong: those ids are in no expert's load");
    }

    private static List<int> Matching(IReadOnlyList<LayerBalance> layers, Func<LayerBalance, bool> found) =>
        [.. Enumerable.Range(0, layers.Count).Where(l => found(layers[l]))];

    private static string Found(List<int> layers) => layers.Count == 0 ? "none" : Counted.Of(layers.Count, "layer");

    private static string Named(List<int> layers) =>
        (layers.Count == 1 ? "layer " : "layers ") + string.Join(", ", layers.Take(NamedLayers)) + (layers.Count > NamedLayers ? $" and {layers.Count - NamedLayers:N0} more" : "");
}
