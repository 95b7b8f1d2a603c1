using ScottPlot;
using SkiaSharp;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Expert load as one picture: each expert's share of a batch's tokens with the mean marked (top), the
/// figure the report calls expert load, in the same unit; and the per-batch load variance over time
/// (bottom), drawn only when there are at least two batches to draw it over.
/// </summary>
internal static class LoadPlot
{
    public const int Width = 1200;
    public const int Height = 900;

    /// <summary>Above this many experts a bar is narrower than its outline: bars touch and go unoutlined so the shape stays visible.</summary>
    private const int OutlinedExperts = 128;

    /// <summary>
    /// The most bars drawn: beyond it a bar is under two pixels wide and a lone busy expert vanishes in
    /// antialiasing, so each bar covers several experts and rises to the busiest of them.
    /// </summary>
    private const int BarredExperts = 512;

    /// <summary>
    /// The load axis's top over the busiest bar: the legend, inside the upper right corner, takes
    /// about a fourteenth of the chart's height and must clear a busiest bar that is the last expert.
    /// </summary>
    private const double LegendHeadroom = 1.2;

    /// <summary>Writes the picture to <paramref name="path"/>, as PNG or JPEG by its extension, whole or not at all.</summary>
    /// <exception cref="ArgumentException">The extension is neither .png nor .jpg/.jpeg.</exception>
    public static void Save(RoutingStats stats, string path) => PlotImage.Save(path, () => Render(stats));

    private static SKImage Render(RoutingStats stats)
    {
        var (load, variance) = Build(stats);
        return variance is null ? PlotImage.Render(load, Width, Height) : PlotImage.Stack(load, variance, Width, Height, 0.6);
    }

    /// <summary>The load chart and, over two batches or more, the variance chart; both start at 0, empty statistics included.</summary>
    internal static (Plot Load, Plot? Variance) Build(RoutingStats stats)
    {
        var shares = stats.ExpertUtilization.Select(u => 100.0 * u).ToArray();
        var experts = shares.Length;

        var load = new Plot();
        if (experts > 0)
        {
            var group = (experts + BarredExperts - 1) / BarredExperts;
            var bars = load.Add.Bars(Enumerable.Range(0, (experts + group - 1) / group).Select(column =>
            {
                var first = column * group;
                var covered = shares.AsSpan(first, Math.Min(group, experts - first));
                return new Bar
                {
                    Position = first + ((covered.Length - 1) / 2.0),
                    Value = Max(covered),
                    Size = group > 1 || experts > OutlinedExperts ? covered.Length : 0.8,
                    LineWidth = experts > OutlinedExperts ? 0 : 1,
                    FillColor = Colors.C0,
                };
            }).ToArray());
            bars.Horizontal = false;

            // The report's mean, in its words: an average of the shares rounds differently at the last digit.
            var meanFraction = stats.UtilizationSummary()["mean_utilization"];
            var mean = load.Add.HorizontalLine(100.0 * meanFraction);
            mean.LegendText = $"mean ({RunReport.Percent(meanFraction)})";
            mean.Color = Colors.Red;
            mean.LinePattern = LinePattern.Dashed;
            load.ShowLegend(Alignment.UpperRight);
            load.Axes.SetLimitsX(-0.5, experts - 0.5);
            load.Axes.SetLimitsY(0, UpperLimit(Math.Max(shares.Max(), 100.0 * meanFraction), LegendHeadroom));
        }
        else
        {
            load.Axes.SetLimits(0, 1, 0, 1);
        }

        load.Title(experts == 0
            ? "expert load: no batch recorded"
            // The counts on a line of their own: a long run's (or a merge's) numbers made one line wider than the picture.
            : $"expert load: share of a batch's tokens per expert, %\n{Counted.Of(experts, "expert")}, {Counted.Of(stats.TotalRoutings, "batch", "batches")}, {Counted.Of(stats.TotalTokens, "token")}"
                + (stats.MergedParts > 1 ? $", summed over {stats.MergedParts:N0} merged snapshots" : "")
                + (experts > BarredExperts ? $"\neach bar covers {(experts + BarredExperts - 1) / BarredExperts} neighbouring experts and shows the busiest of them" : ""));
        load.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        load.XLabel("expert");
        load.YLabel("% of tokens");

        var history = stats.LoadVarianceHistory.Select(v => (double)v).ToArray();
        if (history.Length < 2)
        {
            return (load, null);
        }

        var variance = new Plot();
        variance.Add.Signal(history);
        variance.Axes.SetLimits(0, history.Length - 1, 0, UpperLimit(history.Max()));
        // A merge's history is its snapshots' joined end to end (the report says so too): batches, not a time line.
        var merged = stats.MergedParts > 1;
        variance.Title(merged
            ? $"load variance per batch: variance of tokens per expert ({history.Length:N0} batches)\nthe {stats.MergedParts:N0} merged snapshots' histories joined end to end: no trend over time"
            : $"load variance per batch: variance of tokens per expert (newest {history.Length:N0} batches)");
        variance.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        variance.XLabel(merged ? "batch (each snapshot's oldest to newest, one snapshot after another)" : "batch (oldest to newest)");
        variance.YLabel("variance");

        return (load, variance);
    }

    /// <summary>An axis's top <paramref name="headroom"/> times <paramref name="largest"/>; 1 when nothing is above 0, where an axis of zero span would run negative.</summary>
    private static double UpperLimit(double largest, double headroom = 1.08) => largest > 0 ? largest * headroom : 1;

    private static double Max(ReadOnlySpan<double> values)
    {
        var max = values[0];
        foreach (var value in values)
        {
            max = Math.Max(max, value);
        }

        return max;
    }
}
