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
    /// The heat map as the operator reads it, found by its row of grey cells: layer 0 on top, layer 2 without load grey at the
    /// bottom; each cell the colour of its share on a scale from the smallest share drawn to the largest (layer 0's 75 % and
    /// 8.3 % at the ends, layer 1's even 25 % a quarter of the way).
    /// </summary>
    [Fact]
    public void TheHeatMapHasLayerZeroOnTopEachCellItsShareAndNoLoadGrey()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 3, Experts = 4, Window = 4 });
        model.RecordStep([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, .. Enumerable.Repeat(new[] { 0, 1, 2, 3 }, 3).SelectMany(ids => ids), .. Enumerable.Repeat(-1, 12)], tokens: 12, topK: 1);
        using var picture = Picture(model, timeline: null);

        var cells = Cells(picture, rows: 3, columns: 4, 0, picture.Height);

        var inferno = new ScottPlot.Colormaps.Inferno();
        AssertColor(inferno.GetColor(1), cells[0, 0]);
        AssertColor(inferno.GetColor(0), cells[0, 3]);
        AssertColor(inferno.GetColor(0.25), cells[1, 2]);
        AssertColor(ScottPlot.Colors.Gray, cells[2, 1]);
    }

    /// <summary>A perfectly even model, one share alone, is drawn in the middle of the colours (0 to twice the share), not at an end.</summary>
    [Fact]
    public void AnEvenModelIsDrawnInTheMiddleOfTheColours()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 4 });
        model.RecordStep([0, 1, 2, 3, -1, -1, -1, -1], tokens: 4, topK: 1);
        using var picture = Picture(model, timeline: null);

        var cells = Cells(picture, rows: 2, columns: 4, 0, picture.Height);

        AssertColor(new ScottPlot.Colormaps.Inferno().GetColor(0.5), cells[0, 1]);
    }

    /// <summary>
    /// The balancedness panel under the heat map: a column per step in order, each layer's balancedness coloured from 0 to the
    /// round top over the largest (1/3 and 1/2 on a scale to 0.5), a layer without load grey.
    /// </summary>
    [Fact]
    public void TheBalancePanelColoursEachStepsBalancednessInOrder()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 4 });
        var timeline = new BalanceTimeline(layers: 2, experts: 4, steps: 2);
        // Loads of 3, 1, 0, 0 (balancedness 1/3), then 2, 1, 1, 0 (1/2); layer 1 padding alone.
        foreach (var ids in new[] { new[] { 0, 0, 0, 1, -1, -1, -1, -1 }, [0, 0, 1, 2, -1, -1, -1, -1] })
        {
            model.RecordStep(ids, tokens: 4, topK: 1);
            timeline.Add(ids, tokens: 4, topK: 1);
        }

        using var picture = Picture(model, timeline);

        var cells = Cells(picture, rows: 2, columns: 2, (int)(ModelLoadPlot.Height * 0.6), picture.Height);
        var viridis = new ScottPlot.Colormaps.Viridis();
        AssertColor(viridis.GetColor(2 / 3.0), cells[0, 0]);
        AssertColor(viridis.GetColor(1), cells[0, 1]);
        AssertColor(ScottPlot.Colors.Gray, cells[1, 0]);
    }

    /// <summary>
    /// Past 200 layers a balancedness cell shows the worst of its layers, so that one badly balanced layer among 400 stays in sight
    /// (its colour drawn), as a hot expert among 1,200 does in the heat map (a cell the busiest of its experts).
    /// </summary>
    [Fact]
    public void ABadLayerAndAHotExpertStayInSightPastThePixels()
    {
        const int layers = 400, experts = 1_200;
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = layers, Experts = experts, Window = 2 });
        var timeline = new BalanceTimeline(layers, experts, steps: 2);
        // Every layer spread evenly but layer 1, all on expert 901 (its share 100 %, its balancedness 1/1,200); the last two layers padding alone.
        var ids = new int[layers * experts];
        for (var layer = 0; layer < layers; layer++)
        {
            for (var token = 0; token < experts; token++)
            {
                ids[(layer * experts) + token] = layer >= layers - 2 ? -1 : layer == 1 ? 901 : token;
            }
        }

        for (var step = 0; step < 2; step++)
        {
            model.RecordStep(ids, tokens: experts, topK: 1);
            timeline.Add(ids, tokens: experts, topK: 1);
        }

        using var picture = Picture(model, timeline);
        var split = (int)(ModelLoadPlot.Height * 0.6);

        Assert.True(CountInMap(picture, new ScottPlot.Colormaps.Inferno().GetColor(1), 0, split) > 0, "the hot expert's cell is not drawn in the heat map");
        // Balancedness 1/1,200 on a scale to 1 (the even layers' balancedness).
        Assert.True(CountInMap(picture, new ScottPlot.Colormaps.Viridis().GetColor(1.0 / experts), split, picture.Height) > 0, "the bad layer's cells are not drawn in the balancedness panel");
    }

    /// <summary>
    /// A model of <see cref="ModelLoadPlot.MaxRows"/> layers keeps a row of cells per layer: layer 1's hot expert is a band one
    /// layer high (a tenth of the ten grey layers at the bottom), not two layers merged into one cell.
    /// </summary>
    [Fact]
    public void AModelOfTheMostRowsKeepsARowPerLayer()
    {
        const int layers = ModelLoadPlot.MaxRows;
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = layers, Experts = 2, Window = 1 });
        // Layer 1 all on expert 0, the last ten layers padding alone, the others even.
        model.RecordStep([.. Enumerable.Range(0, layers * 2).Select(i => i / 2 >= layers - 10 ? -1 : i / 2 == 1 ? 0 : i % 2)], tokens: 2, topK: 1);
        using var picture = Picture(model, timeline: null);

        var (left, right, top, bottom) = GreyCells(picture, 0, picture.Height);
        var x = left + ((right - left) / 4);
        var hot = Enumerable.Range(0, picture.Height).Count(y => Near(new ScottPlot.Colormaps.Inferno().GetColor(1), picture.GetPixel(x, y)));

        Assert.InRange(hot, 1, ((bottom - top) / 10.0) + 1.5);
    }

    /// <summary>A replay's balancedness over one column has no time to draw: the picture is the heat map alone, as for a snapshot.</summary>
    [Fact]
    public void ATimelineOfOneColumnDrawsTheHeatMapAlone()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 4 });
        int[] ids = [0, 1, 2, 0, 3, 3, 1, 2];
        model.RecordStep(ids, tokens: 4, topK: 1);
        var timeline = new BalanceTimeline(layers: 2, experts: 4, steps: 1);
        timeline.Add(ids, tokens: 4, topK: 1);

        using var alone = Picture(model, timeline: null);
        using var withTimeline = Picture(model, timeline);

        Assert.Equal(alone.Bytes, withTimeline.Bytes);
    }

    /// <summary>
    /// What the heat map says about what it draws: the title's counts, even split and grey key, the axes' names, each cell's
    /// value a share in % (layer 0's 9 of 12 slots on expert 0: 75), and the layer axis running down, so that its labels
    /// number the rows as drawn (layer 0 on top).
    /// </summary>
    [Fact]
    public void TheHeatMapSaysWhatItDrawsAndNumbersTheLayersDown()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 3, Experts = 8, Window = 4 });
        model.RecordStep([.. Enumerable.Repeat(0, 9), 1, 2, 3, .. Enumerable.Range(0, 12).Select(i => i % 8), .. Enumerable.Repeat(-1, 12)], tokens: 12, topK: 1);

        var (load, balance) = ModelLoadPlot.Build(model, timeline: null);

        Assert.Null(balance);
        Assert.Equal("expert load since the start: each expert's share of its layer's token-expert slots, %\n3 layers × 8 experts, 1 step; an even split is 12.5 %; grey: no load", load.Axes.Title.Label.Text);
        Assert.Equal(("expert", "layer"), (load.Axes.Bottom.Label.Text, load.Axes.Left.Label.Text));
        var map = load.GetPlottables().OfType<ScottPlot.Plottables.Heatmap>().Single();
        Assert.Equal(75.0, map.Intensities[0, 0], 12);
        Assert.True(double.IsNaN(map.Intensities[2, 0]), "a layer without load is no share");
        var limits = load.Axes.GetLimits();
        Assert.Equal((-0.5, 7.5, 2.5, -0.5), (limits.Left, limits.Right, limits.Bottom, limits.Top));
    }

    /// <summary>
    /// The balancedness panel of a replay of more than one column: steps across, layers down, its colour bar to the round top
    /// over the largest balancedness; a timeline of one column has no panel.
    /// </summary>
    [Fact]
    public void TheBalancePanelIsDrawnOverMoreThanOneColumn()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 4 });
        var timeline = new BalanceTimeline(layers: 2, experts: 4, steps: 2);
        foreach (var ids in new[] { new[] { 0, 0, 0, 1, 0, 1, 2, 3 }, [0, 0, 1, 2, 0, 1, 2, 3] })
        {
            model.RecordStep(ids, tokens: 4, topK: 1);
            timeline.Add(ids, tokens: 4, topK: 1);
            Assert.Equal(timeline.Filled > 1, ModelLoadPlot.Build(model, timeline).Balance is not null);
        }

        var balance = ModelLoadPlot.Build(model, timeline).Balance!;

        Assert.Equal(("step", "layer"), (balance.Axes.Bottom.Label.Text, balance.Axes.Left.Label.Text));
        Assert.Equal("balancedness (1 = even)", balance.Axes.GetPanels().OfType<ScottPlot.Panels.ColorBar>().Single().Label);
        var limits = balance.Axes.GetLimits();
        Assert.Equal((-0.5, 1.5, 1.5, -0.5), (limits.Left, limits.Right, limits.Bottom, limits.Top));
    }

    /// <summary>The pixels of <paramref name="color"/> (within 3 a channel) between the left and right of the grey cells from <paramref name="top"/> to <paramref name="bottom"/>: in the map, not in its colour bar.</summary>
    private static int CountInMap(SkiaSharp.SKBitmap bitmap, ScottPlot.Color color, int top, int bottom)
    {
        var (left, right, _, _) = GreyCells(bitmap, top, bottom);
        var count = 0;
        for (var y = top; y < bottom; y++)
        {
            for (var x = left; x < right; x++)
            {
                count += Near(color, bitmap.GetPixel(x, y)) ? 1 : 0;
            }
        }

        return count;
    }

    /// <summary>The colour at the middle of each cell of the heat map between <paramref name="top"/> and <paramref name="bottom"/>, found by its last row, which has no load (grey).</summary>
    private static SkiaSharp.SKColor[,] Cells(SkiaSharp.SKBitmap bitmap, int rows, int columns, int top, int bottom)
    {
        var (left, right, greyTop, last) = GreyCells(bitmap, top, bottom);
        var (width, height) = ((right - left) / (double)columns, last - greyTop);
        var cells = new SkiaSharp.SKColor[rows, columns];
        for (var row = 0; row < rows; row++)
        {
            for (var column = 0; column < columns; column++)
            {
                cells[row, column] = bitmap.GetPixel((int)(left + ((column + 0.5) * width)), (int)(last - ((rows - row - 0.5) * height)));
            }
        }

        return cells;
    }

    /// <summary>The rectangle of grey pixels (no load) between <paramref name="top"/> and <paramref name="bottom"/>: rows of more than 100 of them and the columns grey in most of those, not a grey pixel of antialiased text.</summary>
    private static (int Left, int Right, int Top, int Bottom) GreyCells(SkiaSharp.SKBitmap bitmap, int top, int bottom)
    {
        var grey = new SkiaSharp.SKColor(ScottPlot.Colors.Gray.R, ScottPlot.Colors.Gray.G, ScottPlot.Colors.Gray.B);
        var rows = Enumerable.Range(top, bottom - top).Where(y => Enumerable.Range(0, bitmap.Width).Count(x => bitmap.GetPixel(x, y) == grey) > 100).ToArray();
        Assert.NotEmpty(rows);
        var columns = Enumerable.Range(0, bitmap.Width).Where(x => rows.Count(y => bitmap.GetPixel(x, y) == grey) > rows.Length / 2).ToArray();
        return (columns.Min(), columns.Max() + 1, rows.Min(), rows.Max() + 1);
    }

    private static SkiaSharp.SKBitmap Picture(ModelRoutingStats model, BalanceTimeline? timeline)
    {
        var path = Path.Combine(Path.GetTempPath(), $"moegs-map-{Guid.NewGuid():N}.png");
        try
        {
            ModelLoadPlot.Save(model, timeline, path);
            return SkiaSharp.SKBitmap.Decode(path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static void AssertColor(ScottPlot.Color expected, SkiaSharp.SKColor actual) =>
        Assert.True(Near(expected, actual), $"the cell is {actual}, not {expected.ToHex()}");

    private static bool Near(ScottPlot.Color expected, SkiaSharp.SKColor actual) =>
        Math.Abs(expected.R - actual.Red) <= 3 && Math.Abs(expected.G - actual.Green) <= 3 && Math.Abs(expected.B - actual.Blue) <= 3;

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
