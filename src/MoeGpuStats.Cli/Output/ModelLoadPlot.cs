using ScottPlot;
using SkiaSharp;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// A whole model as one picture: a layers × experts heat map of each expert's share of its layer's
/// load since the start (top), and, for a replay of more than one step, each layer's balancedness
/// over the steps (bottom, <see cref="BalanceTimeline"/>).
/// </summary>
internal static class ModelLoadPlot
{
    public const int Width = 1400;
    public const int Height = 1000;

    /// <summary>Writes the picture to <paramref name="path"/>, as PNG or JPEG by its extension, whole or not at all.</summary>
    /// <param name="stats">The model.</param>
    /// <param name="timeline">The replay's balancedness over the steps; null (a snapshot read back) draws the heat map alone.</param>
    /// <param name="path">The file.</param>
    /// <exception cref="ArgumentException">The extension is neither .png nor .jpg/.jpeg.</exception>
    public static void Save(ModelRoutingStats stats, BalanceTimeline? timeline, string path)
    {
        timeline?.Complete();
        PlotImage.Save(path, () => Render(stats, timeline is { Filled: > 1 } ? timeline : null));
    }

    private static SKImage Render(ModelRoutingStats stats, BalanceTimeline? timeline)
    {
        var (layers, experts) = (stats.Layers, stats.Experts);
        var shares = new double[layers, experts];
        ulong steps = 0;
        for (var l = 0; l < layers; l++)
        {
            using var layer = stats.Layer(l);
            steps = layer.TotalRoutings;
            var counts = layer.ExpertTokenCounts;
            var total = counts.Aggregate(0.0, (sum, count) => sum + count);
            for (var e = 0; e < counts.Count; e++)
            {
                shares[l, e] = total == 0 ? 0 : 100.0 * counts[e] / total;
            }
        }

        var load = new Plot();
        Heatmap(load, shares, new ScottPlot.Colormaps.Inferno(), "% of the layer's slots");
        load.Title($"expert load: each expert's share of its layer's token-expert slots, % ({layers:N0} layers × {experts:N0} experts, {steps:N0} step{(steps == 1 ? "" : "s")}; an even split is {100.0 / experts:0.###} %)");
        Label(load, "expert", "layer");

        if (timeline is null)
        {
            return PlotImage.Render(load, Width, Height);
        }

        var balance = new Plot();
        var columns = timeline.Filled;
        var values = new double[layers, columns];
        for (var l = 0; l < layers; l++)
        {
            for (var c = 0; c < columns; c++)
            {
                values[l, c] = timeline.Balancedness[l, c];
            }
        }

        Heatmap(balance, values, new ScottPlot.Colormaps.Viridis(), "balancedness (1 = even)");
        balance.Title(timeline.StepsPerColumn == 1
            ? $"balancedness per layer and step (mean over max expert load; {columns:N0} steps)"
            : $"balancedness per layer over the steps (mean over max expert load; each column {timeline.StepsPerColumn:N0} steps, {columns:N0} columns)");
        Label(balance, timeline.StepsPerColumn == 1 ? "step" : $"steps ÷ {timeline.StepsPerColumn:N0}", "layer");

        return PlotImage.Stack(load, balance, Width, Height, 0.6);
    }

    /// <summary>
    /// <paramref name="values"/> (<c>[layers, columns]</c>) as a heat map with its color bar: a cell per
    /// value, centred on whole coordinates, layer 0 at the top as a matrix is read.
    /// </summary>
    private static void Heatmap(Plot plot, double[,] values, IColormap colormap, string label)
    {
        var (rows, columns) = (values.GetLength(0), values.GetLength(1));
        var map = plot.Add.Heatmap(values);
        map.Colormap = colormap;
        var (low, high) = (values.Cast<double>().Min(), values.Cast<double>().Max());
        if (low == high)
        {
            // Every cell alike (a perfectly even model): a colour bar of zero span has no ticks, so give it one around the value.
            map.ManualRange = new ScottPlot.Range(Math.Min(0, low), Math.Max(high, 1));
        }

        map.Position = new CoordinateRect(0, columns - 1, 0, rows - 1);
        plot.Add.ColorBar(map).Label = label;
        plot.Axes.SetLimits(-0.5, columns - 0.5, rows - 0.5, -0.5);
    }

    private static void Label(Plot plot, string x, string y)
    {
        plot.XLabel(x);
        plot.YLabel(y);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
    }
}
