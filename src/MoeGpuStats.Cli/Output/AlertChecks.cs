using static System.FormattableString;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// The reports' checks: the conditions the alerting rules in <c>docs/monitoring/moegpustats-alerts.yml</c>
/// watch (an overloaded expert, dead experts, dropped slots, invalid ids), judged once at the rules'
/// starting thresholds, so that a report says whether anything needs a look.
/// </summary>
/// <remarks>
/// As the rules do, the load checks leave out a model's window, or a router's counts since the start, where
/// each expert averages fewer than <see cref="MinMeanLoad"/> slots: there a few tokens to one expert pass the
/// threshold by chance.
/// </remarks>
internal static class AlertChecks
{
    /// <summary>MoeExpertOverloaded: the busiest expert's load over the layer's mean.</summary>
    public const double OverloadedMaxMean = 5;

    /// <summary>The fewest slots per expert in the window for the load checks (the rules' <c>window_mean_expert_load &lt; 20</c>).</summary>
    public const double MinMeanLoad = 20;

    /// <summary>MoeSlotsDropped: the share of routed slots a capacity may drop.</summary>
    public const double DroppedShare = 0.01;

    /// <summary>What the checks judge by, for the reports' heading.</summary>
    public const string Rules = "the alerting rules' starting thresholds (docs/monitoring/moegpustats-alerts.yml)";

    /// <summary>The most layers a check names; the rest are counted.</summary>
    private const int NamedLayers = 10;

    private const string Dead = "experts without a token";
    private const string InvalidLabel = "ids naming no expert";
    private static readonly string Overloaded = Invariant($"busiest expert over {OverloadedMaxMean:0.#} x the mean");
    private static readonly string DroppedLabel = Invariant($"over {DroppedShare * 100:0.#} % of slots dropped");

    /// <summary>A model's checks as report lines: label, value, note.</summary>
    /// <param name="window">The model's balance over the window.</param>
    /// <param name="counts">Its counts since the start.</param>
    public static IEnumerable<(string Label, string Value, string Note)> Model(BalanceSummary window, ModelCounts counts)
    {
        var layers = window.Layers;
        var meanLoad = layers.Count == 0 ? 0 : layers.Average(layer => layer.MeanLoad);
        if (meanLoad < MinMeanLoad)
        {
            var why = NotJudged(meanLoad, "in the window");
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
            // Per layer, as the rule divides each layer's counters: one layer's drops can hide in the model's sum.
            var drops = counts.Layers;
            var dropping = Enumerable.Range(0, drops.Count).Where(l => Over(drops[l].SlotsDropped, drops[l].RoutedSlots)).ToList();
            var most = Enumerable.Range(0, drops.Count).MaxBy(l => drops[l].RoutedSlots == 0 ? 0 : drops[l].SlotsDropped / (double)drops[l].RoutedSlots);
            yield return (DroppedLabel, Found(dropping), dropping.Count == 0
                ? $"{ModelCounts.Percent(counts.SlotsDropped, counts.RoutedSlots)} of routed slots in all"
                : $"{Named(dropping)}; the most {ModelCounts.Percent(drops[most].SlotsDropped, drops[most].RoutedSlots)}, layer {most}");
        }

        yield return Invalid(counts.InvalidExpertIds);
    }

    /// <summary>
    /// One router's checks as report lines, as its rules judge it: the busiest expert's mean share over the
    /// experts' mean (the <c>load_max_mean_ratio</c> gauge), not judged where each expert averages fewer than
    /// <see cref="MinMeanLoad"/> slots since the start; dropped slots where a capacity drops any; invalid ids.
    /// </summary>
    /// <param name="stats">The router's statistics.</param>
    public static IEnumerable<(string Label, string Value, string Note)> Router(RoutingStats stats)
    {
        var summary = stats.UtilizationSummary();
        var counts = stats.ExpertTokenCounts;
        var meanLoad = counts.Count == 0 ? 0 : counts.Sum(count => (double)count) / counts.Count;
        if (meanLoad < MinMeanLoad)
        {
            yield return (Overloaded, "-", NotJudged(meanLoad, "since the start"));
        }
        else if (stats.MostUtilizedExpert() is var (most, _) && summary["mean_utilization"] is > 0 and var mean)
        {
            var ratio = summary["max_utilization"] / mean;
            yield return (Overloaded, ratio > OverloadedMaxMean ? "yes" : "no", Invariant($"{ratio:0.00} x, expert {most}"));
        }

        if (stats.Options.ExpertCapacity is not null || stats.SlotsDropped > 0)
        {
            yield return Dropped(stats.SlotsDropped, stats.RoutedSlots);
        }

        yield return Invalid(stats.InvalidExpertIds);
    }

    private static string NotJudged(double meanLoad, string over)
    {
        // Rounded down: 19.96 slots shown as 20 would read "20, under 20".
        var average = Invariant($"{Math.Floor(meanLoad * 10) / 10:0.#}");
        return Invariant($"not judged: each expert averages {average} {(average == "1" ? "slot" : "slots")} {over}, under {MinMeanLoad:0}, too few to tell chance from imbalance");
    }

    private static (string, string, string) Dropped(ulong dropped, ulong routed) =>
        (DroppedLabel, Over(dropped, routed) ? "yes" : "no", $"{ModelCounts.Percent(dropped, routed)} of routed slots");

    private static bool Over(ulong dropped, ulong routed) => routed > 0 && dropped > DroppedShare * routed;

    private static (string, string, string) Invalid(UInt128 invalid) =>
        (InvalidLabel, invalid == 0 ? "none" : Invariant($"{invalid:N0}"), invalid == 0 ? "" : "the router or --experts is wrong: those ids are in no expert's load");

    private static List<int> Matching(IReadOnlyList<LayerBalance> layers, Func<LayerBalance, bool> found) =>
        [.. Enumerable.Range(0, layers.Count).Where(l => found(layers[l]))];

    private static string Found(List<int> layers) => layers.Count == 0 ? "none" : Counted.Of(layers.Count, "layer");

    private static string Named(List<int> layers) =>
        (layers.Count == 1 ? "layer " : "layers ") + string.Join(", ", layers.Take(NamedLayers)) + (layers.Count > NamedLayers ? $" and {layers.Count - NamedLayers:N0} more" : "");
}
