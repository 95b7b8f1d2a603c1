using System.Globalization;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// The one report a person reads at the end of a command. One unit per kind of figure: an expert's
/// load is always a percentage of a batch's tokens (the seed's utilization, times 100), counts are
/// whole numbers with thousands separators, times are milliseconds; never E-notation.
/// </summary>
internal static class RunReport
{
    /// <summary>How many of the newest batches the variance trend looks at.</summary>
    public const int TrendWindow = 100;

    private const int LabelWidth = 34;
    private const int ValueWidth = 14;

    /// <param name="output">Where the report goes.</param>
    /// <param name="stats">A snapshot (reads only).</param>
    /// <param name="heading">What ran, in one line (a file name in it is shown as written: <see cref="UnsafeText.Escaped"/>).</param>
    /// <param name="engine">Which engine counted and why, or null for a snapshot read from a file.</param>
    /// <param name="timed">What the recorded latencies time, in a phrase.</param>
    public static void Print(TextWriter output, RoutingStats stats, string heading, string? engine, string timed)
    {
        void Line(string label, string value, string note = "") =>
            output.WriteLine($"  {label,-LabelWidth} {value,ValueWidth}{(note.Length > 0 ? "   " + note : "")}".TrimEnd());

        output.WriteLine(UnsafeText.Escaped(heading));
        if (engine is not null)
        {
            output.WriteLine($"engine: {engine}");
        }

        var experts = stats.ExpertUtilization.Count;
        output.WriteLine();
        output.WriteLine("Expert load: each expert's share of a batch's tokens, in %, averaged over batches");
        output.WriteLine("(a token routed to k experts counts for each of them, so the shares add up to k x 100 %;");
        output.WriteLine(" every batch weighs the same whatever its tokens, as the seed's utilization: a model's per-layer figures sum the slots instead)");
        if (stats.MostUtilizedExpert() is var (most, mostShare) && stats.LeastUtilizedExpert() is var (least, leastShare))
        {
            var summary = stats.UtilizationSummary();
            var mean = summary["mean_utilization"];
            Line($"mean of {Counted.Of(experts, "expert")}", Percent(mean));
            Line($"busiest: expert {most}", Percent(mostShare), mean > 0 ? Invariant($"{mostShare / mean:0.0#} x the mean") : "");
            Line($"idlest: expert {least}", Percent(leastShare), mean > 0 ? Invariant($"{leastShare / mean:0.0#} x the mean") : "");
            Line("balancedness", Invariant($"{RoutingMath.Balancedness(stats.ExpertTokenCounts):0.000}"), "mean / most tokens per expert, summed over batches (1 = even): batches weigh by their tokens here, not above");
            Line("CV (std dev / mean)", Invariant($"{summary["utilization_cv"]:0.000}"), "0 = every expert equally loaded");
        }
        else
        {
            Line("experts", "none recorded");
        }

        var fit = VarianceTrend.Of(stats.LoadVarianceHistory, TrendWindow);
        if (fit.Batches == 0)
        {
            Line("load variance trend", "-", "no batch recorded");
        }
        else
        {
            Line("load variance trend", Significant(fit.Slope, signed: true), Invariant($"(tokens per expert)² per batch, over the newest {fit.Batches:N0} batch{(fit.Batches == 1 ? "" : "es")} (mean variance {VarianceText(fit.MeanVariance)})"));
            output.WriteLine($"  {"",-LabelWidth} {"",ValueWidth}   {TrendVerdict(fit, stats.MergedParts)}");
        }

        output.WriteLine();
        output.WriteLine("Batches and tokens");
        Line("batches", Count(stats.TotalRoutings));
        Line("tokens", Count(stats.TotalTokens));
        Line("invalid expert ids", Count(stats.InvalidExpertIds), experts > 0 ? $"ids outside 0 to {experts - 1:N0}, other than -1 (an empty slot)" : "");
        var capacity = stats.Options.ExpertCapacity;
        if (capacity is not null || stats.SlotsDropped > 0)
        {
            Line("token-expert slots", Count(stats.RoutedSlots), "routed to a valid expert (k per token, padding aside)");
            Line("slots dropped", Count(stats.SlotsDropped), capacity is null ? "as the recorded batches said" : "beyond the capacity");
            Line("routing efficiency", Invariant($"{stats.RoutingEfficiency:0.00} %"), "of the routed slots kept");
        }

        output.WriteLine();
        if (capacity is { } slots)
        {
            output.WriteLine($"Capacity: {Counted.Of(slots, "slot")} per expert per batch");
            Line("slots used, all batches", Invariant($"{stats.CapacityStats.OverallUtilization():0.00} %"));
            Line("slots used, fullest batch", Percent(stats.CapacityStats.PeakUtilization));
            Line("batches that dropped", Count(stats.CapacityStats.CapacityExceededCount));
        }
        else
        {
            output.WriteLine("Capacity: none given (simulate's and replay's --capacity), so nothing is dropped and no capacity figures are shown");
        }

        output.WriteLine();
        if (stats.AverageLoadBalanceLoss == 0 && stats.AverageRouterZLoss == 0)
        {
            // A router's losses are never both exactly 0: the batches came without them (a trace of ids, simulate's draws).
            output.WriteLine("Router losses: none recorded (every batch's were 0: the batches came without them, as simulate's and a trace's do)");
        }
        else
        {
            output.WriteLine("Router losses, mean per batch");
            Line("load-balancing loss", FigureText.Fixed(stats.AverageLoadBalanceLoss, "0.0000"));
            Line("router z-loss", FigureText.Fixed(stats.AverageRouterZLoss, "0.0000"));
        }

        output.WriteLine();
        output.WriteLine($"Checks at {AlertChecks.Rules}");
        foreach (var (label, value, note) in AlertChecks.Router(stats))
        {
            Line(label, value, note);
        }

        var latency = stats.RoutingLatencyStats;
        output.WriteLine();
        output.WriteLine($"Time per batch: {timed}");
        if (latency.TotalMeasurements > 0)
        {
            Line("mean", TimeSpread.Milliseconds(latency.AverageLatency()));
            foreach (var (label, value, note) in TimeSpread.Of(latency))
            {
                Line(label, value, note);
            }

            Line("tokens per second", FigureText.Fixed(stats.GetThroughputStats().TokensPerSecond(), "#,0"), "tokens per batch / mean time");
        }
        else
        {
            Line("batches timed", "none");
        }
    }

    /// <summary>One line while recording: the figures an operator watches, in the final report's units.</summary>
    public static string Periodic(RoutingStats stats, int done, int total, TimeSpan elapsed)
    {
        var line = Invariant($"after {done:N0} of {total:N0} batches ({elapsed.TotalSeconds:0.0} s): {stats.TotalTokens:N0} tokens");
        if (stats.MostUtilizedExpert() is var (most, share))
        {
            line += Invariant($"; busiest expert {most} at {share * 100:0.00} % of tokens; CV (std dev / mean) {stats.UtilizationCv():0.000}");
        }

        var latency = stats.RoutingLatencyStats;
        return line + (latency.TotalMeasurements > 0 ? $"; recording {TimeSpread.Milliseconds(latency.AverageLatency())} per batch (mean)" : "; no batch timed yet");
    }

    /// <summary>What the trend says about the imbalance, in words: whether it grows, shrinks, or moves within the batches' scatter.</summary>
    /// <param name="fit">The fit of the newest variances.</param>
    /// <param name="mergedParts">The recordings the statistics combine (<see cref="RoutingStats.MergedParts"/>): a merge's history is theirs joined end to end.</param>
    private static string TrendVerdict(VarianceTrend fit, int mergedParts) =>
        mergedParts > 1 ? $"a merge of {mergedParts:N0} snapshots joins their variance histories end to end, so this is no trend over time"
        : fit.Batches < 3 ? "too few batches to tell a trend from the batches' scatter"
        : !fit.IsClear ? Invariant($"no clear trend: 0 lies within the slope's {VarianceTrend.Confidence * 100:0.0#} % confidence interval")
        : $"the imbalance {(fit.Slope > 0 ? "grows" : "shrinks")}: {Significant(fit.RelativeChange * 100, signed: true)} % of the mean variance across these batches";

    /// <summary>
    /// <paramref name="value"/> to four significant digits (at most 12 decimals), never in E-notation: a
    /// slope of a small variance is a few thousandths, one of a large variance a few thousands.
    /// </summary>
    internal static string Significant(double value, bool signed = false)
    {
        var decimals = value == 0 || !double.IsFinite(value) ? 0 : Math.Clamp(3 - (int)Math.Floor(Math.Log10(Math.Abs(value))), 0, 12);
        var text = FigureText.Fixed(value, "#,0." + new string('0', decimals)).TrimEnd('.');
        return signed && value > 0 ? "+" + text : text;
    }

    /// <summary>A variance as the trend's note prints it: whole numbers from 100 up, where decimals are noise.</summary>
    internal static string VarianceText(double variance) => FigureText.Fixed(variance, variance >= 100 ? "#,0" : "0.###");

    /// <summary>A share as the report prints it, <c>9.38 %</c>; the plot's legend prints the mean so too.</summary>
    internal static string Percent(float fraction) => Invariant($"{fraction * 100:0.00} %");

    private static string Count(ulong value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
