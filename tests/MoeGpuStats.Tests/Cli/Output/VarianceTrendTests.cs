using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>The trend's fit: the seed's slope, and the scatter that tells a trend from noise.</summary>
public sealed class VarianceTrendTests
{
    [Fact]
    public void AStraightLineIsItsOwnSlopeWithNoScatter()
    {
        var fit = VarianceTrend.Of([.. Enumerable.Range(0, 10).Select(i => 100f + (3f * i))], window: 100);

        Assert.Equal((10, 3.0, 113.5, 0.0), (fit.Batches, fit.Slope, fit.MeanVariance, fit.StandardError));
        Assert.True(fit.IsClear);
        Assert.Equal(27.0 / 113.5, fit.RelativeChange, 12);
    }

    /// <summary>A variance that swings about a level line has a slope of its scatter's size, which the standard error covers.</summary>
    [Fact]
    public void ASwingAboutALevelLineIsNoTrend()
    {
        float[] history = [.. Enumerable.Range(0, 100).Select(i => 15_000f + (i % 2 == 0 ? 400f : -400f) + (i % 7 == 0 ? 300f : 0f))];
        var fit = VarianceTrend.Of(history, window: 100);

        Assert.NotEqual(0, fit.Slope);
        Assert.False(fit.IsClear, $"{fit}");
    }

    /// <summary>The fit takes the newest batches only.</summary>
    [Fact]
    public void TheFitIsOverTheNewestBatches()
    {
        var random = new Random(7);
        float[] history = [.. Enumerable.Range(0, 300).Select(i => (i < 200 ? 5_000f : 100f * i) + (float)(random.NextDouble() * 50))];
        var fit = VarianceTrend.Of(history, window: 100);
        var newest = VarianceTrend.Of(history[200..], window: 1_000);

        Assert.Equal(newest, fit);
        Assert.Equal(100, fit.Batches);
        Assert.Equal(100.0, fit.Slope, 0.5);
        Assert.True(fit.IsClear);
    }

    /// <summary>The report prints the seed's f32 slope beside the verdict on this one: they are one line's slope.</summary>
    [Fact]
    public void TheSlopeIsTheSeeds()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 8 });
        var random = new Random(11);
        for (var batch = 0; batch < 150; batch++)
        {
            stats.RecordRouting([.. Enumerable.Range(0, 64).Select(_ => random.Next(1 + (batch / 20)))], tokens: 64, topK: 1);
        }

        var fit = VarianceTrend.Of(stats.LoadVarianceHistory, 100);
        Assert.Equal(stats.RecentLoadVarianceTrend(100), fit.Slope, Math.Abs(fit.Slope) * 1e-3);
    }

    /// <summary>
    /// A slope three standard errors from 0 is a trend over 100 batches but not over 3, where Student's t
    /// with one degree of freedom puts 0 well inside the interval (a level variance read as a trend once in 5 reports).
    /// </summary>
    [Fact]
    public void FewBatchesNeedASteeperSlopeThanMany()
    {
        Assert.Equal(0.9973, VarianceTrend.Confidence, 4);
        Assert.True(new VarianceTrend(100, 3.5, 10, 1).IsClear);
        Assert.False(new VarianceTrend(3, 3.5, 10, 1).IsClear);
        Assert.False(new VarianceTrend(12, 3.5, 10, 1).IsClear);
        Assert.True(new VarianceTrend(12, 4.5, 10, 1).IsClear);
    }

    /// <summary>
    /// The slope's standard error is ordinary least squares': sqrt(SSR / (n − 2) / Sxx). Four batches of slope 8.85 with
    /// residuals (1, −1, −1, 1), orthogonal to the line, have SSR 4 and Sxx 5: an error of sqrt(0.4), a slope of 14 errors,
    /// which Student's t with 2 degrees of freedom (19.2 at 99.73 %) does not call a trend, though it would with 3 (9.2).
    /// </summary>
    [Fact]
    public void TheStandardErrorAndItsDegreesOfFreedomAreThoseOfTheFit()
    {
        const double Slope = 8.85;
        float[] history = [.. new[] { 1.0, -1, -1, 1 }.Select((residual, i) => (float)((Slope * i) + residual))];

        var fit = VarianceTrend.Of(history, window: 100);

        Assert.Equal(Slope, fit.Slope, 4);
        Assert.Equal(Math.Sqrt(0.4), fit.StandardError, 4);
        Assert.False(fit.IsClear, $"{fit}");
    }

    /// <summary>Slopes of small and of large variances keep four significant digits, never E-notation, and a sign where asked.</summary>
    [Theory]
    [InlineData(0.000123456, "+0.0001235")]
    [InlineData(-3.21549, "-3.215")]
    [InlineData(-0.04, "-0.04000")]
    [InlineData(1234567.8, "+1,234,568")]
    [InlineData(0, "0")]
    public void ReportFiguresKeepTheirSignificantDigits(double value, string expected) =>
        Assert.Equal(expected, RunReport.Significant(value, signed: true));

    [Fact]
    public void FewerThanThreeBatchesHaveNoScatterToJudge()
    {
        Assert.Equal(new VarianceTrend(0, 0, 0, double.PositiveInfinity), VarianceTrend.Of([], 100));
        Assert.Equal(new VarianceTrend(1, 0, 7, double.PositiveInfinity), VarianceTrend.Of([7f], 100));
        var two = VarianceTrend.Of([1f, 5f], 100);
        Assert.Equal((2, 4.0, 3.0), (two.Batches, two.Slope, two.MeanVariance));
        Assert.False(two.IsClear);
        Assert.Equal(0, new VarianceTrend(5, 1, 0, 0.1).RelativeChange);
    }
}
