using ScottPlot;
using SkiaSharp;

namespace MoeGpuStats.Cli.Output;

/// <summary>What the CLI's pictures share: rendering ScottPlot plots, one above the other, and writing the file.</summary>
internal static class PlotImage
{
    /// <summary>Writes <paramref name="render"/>'s picture to <paramref name="path"/>, as PNG or JPEG by its extension, whole or not at all.</summary>
    /// <exception cref="ArgumentException">The extension is neither .png nor .jpg/.jpeg (checked before anything is drawn).</exception>
    public static void Save(string path, Func<SKImage> render)
    {
        var format = OutputPath.FormatOf(path) switch
        {
            PlotFormat.Png => SKEncodedImageFormat.Png,
            PlotFormat.Jpeg => SKEncodedImageFormat.Jpeg,
            _ => throw new ArgumentException($"{path}: the plot is written as PNG (.png) or JPEG (.jpg, .jpeg).", nameof(path)),
        };
        using var image = render();
        using var encoded = image.Encode(format, 90);
        OutputPath.WriteAtomically(path, encoded.SaveTo);
    }

    /// <summary><paramref name="plot"/> drawn on a <paramref name="width"/> × <paramref name="height"/> canvas of its own.</summary>
    public static SKImage Render(Plot plot, int width, int height)
    {
        using var surface = SKSurface.Create(new SKImageInfo(width, height));
        plot.Render(surface);
        return surface.Snapshot();
    }

    /// <summary><paramref name="top"/> over <paramref name="bottom"/>, the top taking <paramref name="topShare"/> of the height.</summary>
    public static SKImage Stack(Plot top, Plot bottom, int width, int height, double topShare)
    {
        // Each plot clears the canvas it renders on, so each gets a surface of its own.
        var topHeight = (int)(height * topShare);
        using var surface = SKSurface.Create(new SKImageInfo(width, height));
        using (var upper = Render(top, width, topHeight))
        using (var lower = Render(bottom, width, height - topHeight))
        {
            surface.Canvas.DrawImage(upper, 0, 0);
            surface.Canvas.DrawImage(lower, 0, topHeight);
        }

        return surface.Snapshot();
    }
}
