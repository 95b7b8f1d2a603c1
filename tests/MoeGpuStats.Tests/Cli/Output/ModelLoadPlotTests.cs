using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>The model heat map's cells beyond its pixels: a block of values by its largest (load) or smallest (balancedness), none left out.</summary>
public sealed class ModelLoadPlotTests
{
    /// <summary>
    /// The balancedness panel's steps count from 0 at the first step recorded: its title says which of the trace's steps
    /// that is (--skip-steps) and that steps of padding alone were left out (--skip-empty-steps), each only when so.
    /// </summary>
    [Theory]
    [InlineData(false, 0, 10, "10 steps")]
    [InlineData(true, 0, 10, "10 steps recorded, padding alone left out")]
    [InlineData(false, 5, 10, "10 steps, from the trace's step 5 (--skip-steps)")]
    [InlineData(true, 5, 10, "10 steps recorded, padding alone left out, from the trace's step 5 (--skip-steps)")]
    [InlineData(false, 5, 1_200, "each column 2 steps, from the trace's step 5 (--skip-steps), 600 columns")]
    public void TheBalanceTitleSaysWhichStepsItsAxisCounts(bool skipEmpty, int skipped, int steps, string expected)
    {
        var timeline = new BalanceTimeline(layers: 2, experts: 4, steps, skipEmpty, skipped);

        var title = ModelLoadPlot.BalanceTitle(timeline, timeline.Columns, noLoad: "");

        Assert.Equal(expected, title.Split('\n')[1]);
    }

    [Fact]
    public void EveryValueReachesACellTheLastBlocksPartial()
    {
        // 5 layers × 7 experts: one hot value per layer, wherever it lies, and one cold one.
        var values = new double[5, 7];
        (values[0, 6], values[1, 0], values[2, 3], values[3, 5], values[4, 6]) = (9, 8, 7, 6, 5);
        values[4, 0] = -1;

        var largest = ModelLoadPlot.Reduce(values, rowBlock: 2, columnBlock: 3, largest: true);
        var smallest = ModelLoadPlot.Reduce(values, rowBlock: 2, columnBlock: 3, largest: false);

        Assert.Equal(new double[,] { { 8, 0, 9 }, { 0, 7, 0 }, { 0, 0, 5 } }, largest);
        Assert.Equal(new double[,] { { 0, 0, 0 }, { 0, 0, 0 }, { -1, 0, 5 } }, smallest);
    }

    /// <summary>A value without load (NaN) does not hide its block's others; a block of them alone stays NaN (drawn grey).</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ABlockIsNaNOnlyWhenAllItsValuesAre(bool largest)
    {
        var values = new double[,] { { double.NaN, 0.5, double.NaN, double.NaN }, { 0.25, double.NaN, double.NaN, double.NaN } };

        var cells = ModelLoadPlot.Reduce(values, rowBlock: 2, columnBlock: 2, largest);

        Assert.Equal(new double[,] { { largest ? 0.5 : 0.25, double.NaN } }, cells);
    }

    [Fact]
    public void AModelThatFitsItsPixelsKeepsACellPerValue()
    {
        var values = new double[ModelLoadPlot.MaxRows, ModelLoadPlot.MaxColumns];
        Assert.Same(values, ModelLoadPlot.Reduce(values, 1, 1, largest: true));
    }

    /// <summary>
    /// Colour-bar ticks at a round step with the decimals the step needs: distinct labels over a narrow
    /// span (they read 12.5 nine times), the same ticks at any height; a span too narrow for distinct
    /// labels gets one tick (a span of 10^-15 near 50 looped for ever, one of 10^-16 threw).
    /// </summary>
    [Theory]
    [InlineData(12.4, 12.6, "12.40 12.45 12.50 12.55 12.60")]
    [InlineData(0.0, 1.0, "0.00 0.25 0.50 0.75 1.00")]
    [InlineData(3.9, 27.0, "5 10 15 20 25")]
    [InlineData(0.0, 100.0, "0 25 50 75 100")]
    [InlineData(7.0, 19.0, "7.5 10.0 12.5 15.0 17.5")]
    [InlineData(0.021, 0.052, "0.03 0.04 0.05")]
    [InlineData(-0.001, 1.0, "0.00 0.25 0.50 0.75 1.00")]
    [InlineData(49.99999999999999, 50.00000000000001, "50")]
    [InlineData(1.5625, 1.5625000000000002, "1.5625")]
    [InlineData(0.0, 1e-16, "5E-17")]
    [InlineData(1e300, 1.7e308, "5E+307 1E+308 1.5E+308")]
    public void ColorBarTicksAreRoundAndDistinct(double low, double high, string expected)
    {
        var ticks = ModelLoadPlot.ColorBarTicks(new ScottPlot.Range(low, high));
        using var paint = ScottPlot.Paint.NewDisposablePaint();
        ticks.Regenerate(new ScottPlot.CoordinateRange(low, high), ScottPlot.Edge.Right, new ScottPlot.PixelLength(400), paint, new ScottPlot.LabelStyle());
        Assert.Equal(expected, string.Join(' ', ticks.Ticks.Select(tick => tick.Label)));
    }

    /// <summary>
    /// Balancedness colours run from 0 to the largest value rounded up to one significant digit, at most 1:
    /// a model balanced between 0.04 and 0.1 spans the colours; no load (NaN) or values near 1 keep 0 to 1.
    /// </summary>
    [Theory]
    [InlineData(new[] { 0.04, 0.0912 }, 0.1)]
    [InlineData(new[] { 0.2, 0.37 }, 0.4)]
    [InlineData(new[] { 0.3, 0.4 }, 0.4)]
    [InlineData(new[] { 0.5, 0.95 }, 1.0)]
    [InlineData(new[] { 0.5, 1.0 }, 1.0)]
    [InlineData(new[] { double.NaN, 0.003 }, 0.003)]
    [InlineData(new[] { double.NaN, double.NaN }, 1.0)]
    public void BalancednessColoursSpanZeroToARoundTopOverTheLargest(double[] values, double top)
    {
        var grid = new double[1, values.Length];
        for (var i = 0; i < values.Length; i++)
        {
            grid[0, i] = values[i];
        }

        Assert.Equal(top, ModelLoadPlot.BalanceScaleTop(grid), 12);
    }

    /// <summary>A model of one layer (or one expert) is a heat map of one row (or column): its cells are drawn (a zero-height rectangle drew none).</summary>
    [Theory]
    [InlineData(1, 16)]
    [InlineData(6, 1)]
    public void AMapOfOneRowOrColumnDrawsItsCells(int layers, int experts)
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = layers, Experts = experts, Window = 4 });
        model.RecordStep([.. Enumerable.Range(0, layers * 40).Select(i => (i * i / 7) % experts)], tokens: 40, topK: 1);
        var path = Path.Combine(Path.GetTempPath(), $"moegs-map-{Guid.NewGuid():N}.png");
        try
        {
            ModelLoadPlot.Save(model, timeline: null, path);
            using var bitmap = SkiaSharp.SKBitmap.Decode(path);
            var middle = Enumerable.Range(0, 100).Select(i => bitmap.GetPixel(bitmap.Width * (10 + (7 * i / 10)) / 100, bitmap.Height / 2)).ToArray();
            Assert.True(middle.Count(pixel => pixel != SkiaSharp.SKColors.White) > 80, $"{middle.Count(pixel => pixel != SkiaSharp.SKColors.White)} of 100 pixels across the map's middle are not white: the cells were not drawn");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// The heat map's title for the widest model and a merge of many snapshots: no text reaches the picture's edges, where a
    /// title wider than the picture was cut on both sides.
    /// </summary>
    [Fact]
    public void TheTitleOfAMergedModelFitsThePicture()
    {
        var options = new ModelRoutingStatsOptions { Layers = 94, Experts = 4096, Window = 1 };
        using var model = new ModelRoutingStats(options);
        model.RecordStep([.. Enumerable.Range(0, 94 * 2 * 8).Select(i => i == 0 ? 4095 : -1)], tokens: 2, topK: 8);
        // 128 snapshots, merged two at a time.
        var merged = model.Snapshot();
        while (merged.MergedParts < 128)
        {
            using var half = merged;
            using var copy = half.Snapshot();
            merged = ModelRoutingStats.Merge([half, copy]);
        }

        var path = Path.Combine(Path.GetTempPath(), $"moegs-title-{Guid.NewGuid():N}.png");
        try
        {
            ModelLoadPlot.Save(merged, timeline: null, path);
            using var bitmap = SkiaSharp.SKBitmap.Decode(path);
            var edges = from y in Enumerable.Range(0, 80)
                        from x in new[] { 0, 1, 2, 3, bitmap.Width - 4, bitmap.Width - 3, bitmap.Width - 2, bitmap.Width - 1 }
                        where bitmap.GetPixel(x, y) != SkiaSharp.SKColors.White
                        select (x, y);
            Assert.Empty(edges);
        }
        finally
        {
            merged.Dispose();
            File.Delete(path);
        }
    }
}
