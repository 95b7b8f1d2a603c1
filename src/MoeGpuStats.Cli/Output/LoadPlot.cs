using ScottPlot;
using SkiaSharp;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Expert load as one picture: per-expert share of token slots with the mean marked (top), and the
/// per-batch load variance over time (bottom).
/// </summary>
internal static class LoadPlot
{
    public const int Width = 1200;
    public const int Height = 900;

    public static void Save(RoutingStats stats, string path)
    {
        var counts = stats.ExpertTokenCounts;
        var total = counts.Aggregate(0.0, (sum, c) => sum + c);
        var shares = counts.Select(c => total > 0 ? 100.0 * c / total : 0.0).ToArray();

        var load = new Plot();
        load.Add.Bars(shares);
        if (shares.Length > 0)
        {
            var mean = load.Add.HorizontalLine(100.0 / shares.Length);
            mean.LegendText = $"mean ({100.0 / shares.Length:G3}%)";
            mean.Color = Colors.Red;
            mean.LinePattern = LinePattern.Dashed;
            load.ShowLegend(Alignment.UpperRight);
        }

        load.Title($"share of token slots per expert ({shares.Length} experts, {stats.TotalRoutings} batches, {stats.TotalTokens} tokens)");
        load.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        load.XLabel("expert");
        load.YLabel("% of slots");
        load.Axes.Margins(bottom: 0);

        var variance = new Plot();
        var history = stats.LoadVarianceHistory.Select(v => (double)v).ToArray();
        if (history.Length > 0)
        {
            variance.Add.Signal(history);
        }

        variance.Title("load variance per batch (newest 1,000)");
        variance.XLabel("batch (oldest to newest)");
        variance.YLabel("variance of slot counts");

        // Each plot clears the canvas it renders on, so each gets a surface of its own.
        var loadHeight = (int)(Height * 0.6);
        using var surface = SKSurface.Create(new SKImageInfo(Width, Height));
        using (var top = Render(load, Width, loadHeight))
        using (var bottom = Render(variance, Width, Height - loadHeight))
        {
            surface.Canvas.DrawImage(top, 0, 0);
            surface.Canvas.DrawImage(bottom, 0, loadHeight);
        }

        using var image = surface.Snapshot();
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        using var file = File.Create(path);
        png.SaveTo(file);
    }

    private static SKImage Render(Plot plot, int width, int height)
    {
        using var surface = SKSurface.Create(new SKImageInfo(width, height));
        plot.Render(surface);
        return surface.Snapshot();
    }
}
