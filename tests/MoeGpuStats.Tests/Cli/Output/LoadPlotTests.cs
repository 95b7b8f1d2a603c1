using MoeGpuStats.Cli.Output;
using SkiaSharp;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary><see cref="LoadPlot"/>: the picture of one layer's statistics.</summary>
public sealed class LoadPlotTests
{
    [Fact]
    public void ThePlotIsAPngOfTheExpectedSize()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 8 });
        var random = new Random(2);
        for (var i = 0; i < 40; i++)
        {
            stats.RecordRouting([.. Enumerable.Range(0, 256).Select(_ => (int)(Math.Pow(random.NextDouble(), 2) * 8))], tokens: 128, topK: 2);
        }

        var path = Path.Combine(Path.GetTempPath(), $"moegs-plot-{Guid.NewGuid():N}.png");
        try
        {
            LoadPlot.Save(stats, path);
            using var bitmap = SKBitmap.Decode(path);
            Assert.NotNull(bitmap);
            Assert.Equal((LoadPlot.Width, LoadPlot.Height), (bitmap.Width, bitmap.Height));
            Assert.True(new FileInfo(path).Length > 10_000, "the picture should hold two charts, not a blank canvas");
            var distinctColors = Enumerable.Range(0, 60).Select(i => bitmap.GetPixel(i * 19 % bitmap.Width, i * 13 % bitmap.Height)).Distinct().Count();
            Assert.True(distinctColors > 1, "the picture is one flat color");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// At 4,096 experts a bar per expert is a quarter of a pixel and one busy expert vanishes in
    /// antialiasing; the plot must still show it as a solid bar of the bars' color, as tall as its share.
    /// </summary>
    [Fact]
    public void OneBusyExpertAmongFourThousandStaysVisible()
    {
        const int experts = 4096, hot = 2001;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = experts });
        stats.RecordRouting([.. Enumerable.Range(0, 2 * experts).Select(i => i % 2 == 0 ? hot : i / 2)], tokens: experts, topK: 2);

        using var bitmap = Picture(stats);
        var barColor = new SKColor(0x1F, 0x77, 0xB4);
        var solid = 0;
        for (var y = 250; y < 400; y++)
        {
            for (var x = 0; x < bitmap.Width; x++)
            {
                solid += bitmap.GetPixel(x, y) == barColor ? 1 : 0;
            }
        }

        Assert.True(solid >= 150, $"{solid} pixels of the bar color in the upper half of the load chart: the busy expert's bar is not drawn solid");
    }

    /// <summary>
    /// The legend's mean reads as the text report's, from the same figure: at a mean of exactly 1/32
    /// (3.125 %) an average of the shares and the seed's mean utilization round to different last digits.
    /// </summary>
    [Fact]
    public void TheLegendsMeanIsTheReportsMean()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 64 });
        stats.RecordRouting([.. Enumerable.Range(0, 44).Select(i => (i * 7) % 64)], tokens: 22, topK: 2);
        using var text = new StringWriter();
        RunReport.Print(text, stats, "heading", engine: null, timed: "as this test timed it");
        var reported = text.ToString().Split('\n').Single(line => line.TrimStart().StartsWith("mean of 64 experts", StringComparison.Ordinal));

        var (load, _) = LoadPlot.Build(stats);
        var legend = load.GetPlottables().OfType<ScottPlot.Plottables.HorizontalLine>().Single().LegendText;

        Assert.StartsWith("mean (", legend, StringComparison.Ordinal);
        Assert.EndsWith(legend["mean (".Length..^1], reported.TrimEnd(), StringComparison.Ordinal);
    }

    /// <summary>
    /// The legend in the load chart's upper right corner clears the busiest bars under it, in the shorter chart
    /// drawn above a variance chart: the legend's pixels (those that change when it is hidden) end well above the
    /// first pixel of a bar in every column. The busiest experts are the last ones, from <paramref name="busiestFrom"/>
    /// on (the last alone of 8; the last fifth of 600, with a title of two lines), so that bars stand under the legend
    /// whatever its width in the machine's fonts.
    /// </summary>
    [Theory]
    [InlineData(8, 7)]
    [InlineData(600, 480)]
    public void TheLegendClearsTheBusiestBarUnderIt(int experts, int busiestFrom)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = experts });
        const int tokens = 1200;
        for (var batch = 0; batch < 2; batch++)
        {
            stats.RecordRouting([.. Enumerable.Range(0, tokens).Select(t => t % 8 == 0 ? t % experts : busiestFrom + (t % (experts - busiestFrom)))], tokens, topK: 1);
        }

        var (load, _) = LoadPlot.Build(stats);
        var height = (int)(LoadPlot.Height * 0.6);
        using var withLegend = SKBitmap.FromImage(PlotImage.Render(load, LoadPlot.Width, height));
        load.HideLegend();
        using var without = SKBitmap.FromImage(PlotImage.Render(load, LoadPlot.Width, height));

        var barColor = new SKColor(0x1F, 0x77, 0xB4);
        var columns = 0;
        for (var x = 0; x < LoadPlot.Width; x++)
        {
            var legendBottom = Enumerable.Range(0, height).LastOrDefault(y => withLegend.GetPixel(x, y) != without.GetPixel(x, y), -1);
            var barTop = Enumerable.Range(0, height).FirstOrDefault(y => without.GetPixel(x, y) == barColor, -1);
            if (legendBottom < 0 || barTop < 0)
            {
                continue;
            }

            columns++;
            Assert.True(barTop - legendBottom >= 10, $"column {x}: the legend ends at pixel {legendBottom} and the bar starts at {barTop}");
        }

        Assert.True(columns > 0, "no column holds both the legend and a bar: the test no longer puts the busiest bars under the legend");
    }

    /// <summary>One batch has no variance over time to draw: the load chart takes the whole picture, with no empty time axis below it.</summary>
    [Fact]
    public void ASingleBatchDrawsNoTimeAxis()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 0, 0, 0, 0, 0, 0, 1], tokens: 8, topK: 1);
        var single = TallestBar(stats);
        stats.RecordRouting([0, 0, 0, 0, 0, 0, 0, 1], tokens: 8, topK: 1);
        var two = TallestBar(stats);

        Assert.True(single > 0.6 * LoadPlot.Height, $"one batch: the busiest bar is {single} px of {LoadPlot.Height}; the load chart should take the whole height");
        Assert.True(two < 0.6 * LoadPlot.Height, $"two batches: the busiest bar is {two} px of {LoadPlot.Height}; the variance chart should share the height");
    }

    /// <summary>Statistics without load (none recorded, or batches of padding alone) draw axes from 0 up, not a span around 0 that runs negative.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    public void AChartWithoutLoadStartsAtZero(int paddingBatches)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        for (var batch = 0; batch < paddingBatches; batch++)
        {
            stats.RecordRouting([-1, -1, -1, -1], tokens: 2, topK: 2);
        }

        var (load, variance) = LoadPlot.Build(stats);

        var limits = load.Axes.GetLimits();
        Assert.Equal((0.0, 1.0), (limits.Bottom, limits.Top));
        if (paddingBatches == 0)
        {
            Assert.Equal("expert load: no batch recorded", load.Axes.Title.Label.Text);
            Assert.Null(variance);
        }
        else
        {
            var time = variance!.Axes.GetLimits();
            Assert.Equal((0.0, 1.0), (time.Bottom, time.Top));
        }
    }

    /// <summary>
    /// A merge's variance history is its snapshots' joined end to end: its chart says so and does not read as a time
    /// line (the text report says "no trend over time"); the load chart's title names the merge. One recording's do not.
    /// </summary>
    [Fact]
    public void AMergesChartsSayItsHistoryIsJoinedNotATimeLine()
    {
        using var first = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        using var second = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        foreach (var stats in new[] { first, second })
        {
            stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
            stats.RecordRouting([0, 1, 0, 2], tokens: 2, topK: 2);
        }

        using var merged = RoutingStats.Merge([first, second]);
        var (load, variance) = LoadPlot.Build(merged);
        var (alone, aloneVariance) = LoadPlot.Build(first);

        Assert.EndsWith("summed over 2 merged snapshots", load.Axes.Title.Label.Text);
        Assert.Contains("the 2 merged snapshots' histories joined end to end: no trend over time", variance!.Axes.Title.Label.Text);
        Assert.Equal("batch (each snapshot's oldest to newest, one snapshot after another)", variance.Axes.Bottom.Label.Text);
        Assert.DoesNotContain("merged", alone.Axes.Title.Label.Text);
        Assert.Equal("batch (oldest to newest)", aloneVariance!.Axes.Bottom.Label.Text);
    }

    /// <summary>
    /// What the operator reads off the load chart: a bar per expert at its index, as tall as its share of a batch's tokens in %
    /// (4, 2, 1 and 1 slots of 4 tokens: 100, 50, 25 and 25 %), the mean line at the mean share in % (2 slots a token over
    /// 4 experts: 50 %), an axis that shows the first and last bars whole, the counts in the title; and a variance chart
    /// over the batches recorded, from the first to the last.
    /// </summary>
    [Fact]
    public void TheChartsDrawEachExpertsShareTheMeanAndTheBatches()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 0, 2, 0, 3, 1, 0], tokens: 4, topK: 2);
        stats.RecordRouting([0, 1, 0, 2, 0, 3, 1, 0], tokens: 4, topK: 2);
        stats.RecordRouting([0, 1, 0, 2, 0, 3, 1, 0], tokens: 4, topK: 2);

        var (load, variance) = LoadPlot.Build(stats);

        var bars = load.GetPlottables().OfType<ScottPlot.Plottables.BarPlot>().Single().Bars;
        Assert.Equal([0.0, 1, 2, 3], bars.Select(bar => bar.Position));
        Assert.Equal([100.0, 50, 25, 25], bars.Select(bar => Math.Round(bar.Value, 9)));
        Assert.Equal(50.0, load.GetPlottables().OfType<ScottPlot.Plottables.HorizontalLine>().Single().Y, 9);
        var limits = load.Axes.GetLimits();
        Assert.Equal((-0.5, 3.5), (limits.Left, limits.Right));
        Assert.Equal("expert load: share of a batch's tokens per expert, %\n4 experts, 3 batches, 12 tokens", load.Axes.Title.Label.Text);
        var time = variance!.Axes.GetLimits();
        Assert.Equal((0.0, 2.0), (time.Left, time.Right));
    }

    /// <summary>
    /// Past 512 experts a bar covers several, centred over them and as wide as they are, as tall as the busiest: the bar over a lone
    /// busy expert of 4,096 (eight a bar) stands over that expert; the title says what a bar covers from 513 experts on, not at 512.
    /// </summary>
    [Theory]
    [InlineData(512, 2001, 1)]
    [InlineData(513, 500, 2)]
    [InlineData(4096, 2001, 8)]
    public void ABarOfSeveralExpertsStandsOverThemAndTheTitleSaysSo(int experts, int hot, int group)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = experts });
        stats.RecordRouting([.. Enumerable.Range(0, 2 * experts).Select(i => i % 2 == 0 ? hot % experts : i / 2)], tokens: experts, topK: 2);

        var (load, _) = LoadPlot.Build(stats);

        var busiest = load.GetPlottables().OfType<ScottPlot.Plottables.BarPlot>().Single().Bars.MaxBy(bar => bar.Value)!;
        var first = hot % experts / group * group;
        Assert.Equal(first + ((Math.Min(group, experts - first) - 1) / 2.0), busiest.Position);
        Assert.InRange(hot % experts, busiest.Position - (busiest.Size / 2), busiest.Position + (busiest.Size / 2));
        var title = load.Axes.Title.Label.Text;
        if (group == 1)
        {
            Assert.DoesNotContain("each bar covers", title);
        }
        else
        {
            Assert.EndsWith($"\neach bar covers {group} neighbouring experts and shows the busiest of them", title);
        }
    }

    /// <summary>The variance chart's title counts the batches it draws, the newest 1,000 of a longer run, not the run's batches.</summary>
    [Fact]
    public void TheVarianceTitleCountsTheBatchesDrawn()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        for (var batch = 0; batch < 1_003; batch++)
        {
            stats.RecordRouting([0, 1, batch % 4, 3], tokens: 2, topK: 2);
        }

        var (_, variance) = LoadPlot.Build(stats);

        Assert.Equal("load variance per batch: variance of tokens per expert (newest 1,000 batches)", variance!.Axes.Title.Label.Text);
        Assert.Equal((0.0, 999.0), (variance.Axes.GetLimits().Left, variance.Axes.GetLimits().Right));
    }

    /// <summary>
    /// The picture is the load chart over the top 60 % of its height and the variance chart under it, each as drawn alone at
    /// its size: neither is drawn over the other, nor are their shares swapped.
    /// </summary>
    [Fact]
    public void TheLoadChartTakesTheTopAndTheVarianceChartTheRest()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 6 });
        stats.RecordRouting([0, 1, 0, 2, 0, 3, 4, 5], tokens: 4, topK: 2);
        stats.RecordRouting([0, 1, 2, 3, 4, 5, 0, 1], tokens: 4, topK: 2);
        using var picture = Picture(stats);
        var (load, variance) = LoadPlot.Build(stats);
        var top = (int)(LoadPlot.Height * 0.6);
        using var upper = SKBitmap.FromImage(PlotImage.Render(load, LoadPlot.Width, top));
        using var lower = SKBitmap.FromImage(PlotImage.Render(variance!, LoadPlot.Width, LoadPlot.Height - top));

        var differing = 0;
        for (var y = 0; y < LoadPlot.Height; y++)
        {
            for (var x = 0; x < LoadPlot.Width; x++)
            {
                var expected = y < top ? upper.GetPixel(x, y) : lower.GetPixel(x, y - top);
                differing += picture.GetPixel(x, y) == expected ? 0 : 1;
            }
        }

        Assert.Equal(0, differing);
    }

    /// <summary>The most pixels of the bars' color in one column: the busiest expert's bar.</summary>
    private static int TallestBar(RoutingStats stats)
    {
        using var bitmap = Picture(stats);
        var barColor = new SKColor(0x1F, 0x77, 0xB4);
        return Enumerable.Range(0, bitmap.Width).Max(x => Enumerable.Range(0, bitmap.Height).Count(y => bitmap.GetPixel(x, y) == barColor));
    }

    /// <summary>The picture <see cref="LoadPlot.Save"/> writes for <paramref name="stats"/>, read back (the file removed).</summary>
    private static SKBitmap Picture(RoutingStats stats)
    {
        var path = Path.Combine(Path.GetTempPath(), $"moegs-plot-{Guid.NewGuid():N}.png");
        try
        {
            LoadPlot.Save(stats, path);
            return SKBitmap.Decode(path);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
