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
        var format = OutputPath.FormatOf(path) switch
        {
            PlotFormat.Png => SKEncodedImageFormat.Png,
            PlotFormat.Jpeg => SKEncodedImageFormat.Jpeg,
            _ => throw new ArgumentException($"{path}: the plot is written as PNG (.png) or JPEG (.jpg, .jpeg).", nameof(path)),
        };
        timeline?.Complete();
        using var image = Render(stats, timeline is { Filled: > 1 } ? timeline : null);
        using var encoded = image.Encode(format, 90);
        OutputPath.WriteAtomically(path, encoded.SaveTo);
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
        var map = load.Add.Heatmap(shares);
        map.Colormap = new ScottPlot.Colormaps.Inferno();
        map.Position = new CoordinateRect(0, experts - 1, 0, layers - 1);
        var bar = load.Add.ColorBar(map);
        bar.Label = "% of the layer's slots";
        load.Axes.SetLimits(-0.5, experts - 0.5, layers - 0.5, -0.5);
        load.Title($"expert load: each expert's share of its layer's token-expert slots, % ({layers:N0} layers × {experts:N0} experts, {steps:N0} step{(steps == 1 ? "" : "s")}; an even split is {100.0 / experts:0.###} %)");
        Label(load, "expert", "layer");

        if (timeline is null)
        {
            return Render(load, Width, Height);
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

        var trend = balance.Add.Heatmap(values);
        trend.Colormap = new ScottPlot.Colormaps.Viridis();
        trend.Position = new CoordinateRect(0, columns - 1, 0, layers - 1);
        var trendBar = balance.Add.ColorBar(trend);
        trendBar.Label = "balancedness (1 = even)";
        balance.Axes.SetLimits(-0.5, columns - 0.5, layers - 0.5, -0.5);
        balance.Title(timeline.StepsPerColumn == 1
            ? $"balancedness per layer and step (mean over max expert load; {columns:N0} steps)"
            : $"balancedness per layer over the steps (mean over max expert load; each column {timeline.StepsPerColumn:N0} steps, {columns:N0} columns)");
        Label(balance, timeline.StepsPerColumn == 1 ? "step" : $"steps ÷ {timeline.StepsPerColumn:N0}", "layer");

        // Each plot clears the canvas it renders on, so each gets a surface of its own.
        var loadHeight = (int)(Height * 0.6);
        using var surface = SKSurface.Create(new SKImageInfo(Width, Height));
        using (var top = Render(load, Width, loadHeight))
        using (var bottom = Render(balance, Width, Height - loadHeight))
        {
            surface.Canvas.DrawImage(top, 0, 0);
            surface.Canvas.DrawImage(bottom, 0, loadHeight);
        }

        return surface.Snapshot();
    }

    private static void Label(Plot plot, string x, string y)
    {
        plot.XLabel(x);
        plot.YLabel(y);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
    }

    private static SKImage Render(Plot plot, int width, int height)
    {
        using var surface = SKSurface.Create(new SKImageInfo(width, height));
        plot.Render(surface);
        return surface.Snapshot();
    }
}
