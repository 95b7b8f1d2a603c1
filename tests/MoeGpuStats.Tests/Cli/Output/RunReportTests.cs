using System.Globalization;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>A single router's report (report, replay and simulate of one layer), its figures read against the statistics they come from.</summary>
public sealed class RunReportTests
{
    private const int Experts = 4;

    /// <summary>
    /// Three batches over 4 experts at a capacity of 2: one of 4 tokens evenly, one of 6 whose expert 0 takes 3 (one slot
    /// dropped), one of 8 evenly (every slot full); and one id naming no expert.
    /// </summary>
    private static RoutingStats ThreeBatches()
    {
        var stats = new RoutingStats(new RoutingStatsOptions { Experts = Experts, ExpertCapacity = 2 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);
        stats.RecordRouting([0, 0, 0, 1, 1, 2, 9], tokens: 7, topK: 1);
        stats.RecordRouting([0, 1, 2, 3, 0, 1, 2, 3], tokens: 8, topK: 1);
        return stats;
    }

    /// <summary>The mean, busiest and idlest expert are the statistics' own, each beside its multiple of the mean.</summary>
    [Fact]
    public void TheExpertLoadIsTheStatisticsOwn()
    {
        using var stats = ThreeBatches();
        var mean = stats.UtilizationSummary()["mean_utilization"];
        var (most, mostShare) = stats.MostUtilizedExpert()!.Value;
        var (least, leastShare) = stats.LeastUtilizedExpert()!.Value;
        Assert.NotEqual(most, least);
        Assert.NotEqual(stats.UtilizationSummary()["min_utilization"], mean);

        var lines = Report(stats);

        Assert.Equal(Percent(mean), Cell(lines, $"mean of {Experts} experts").Value);
        Assert.Equal((Percent(mostShare), $"{(mostShare / mean).ToString("0.0#", CultureInfo.InvariantCulture)} x the mean"), Cell(lines, $"busiest: expert {most}"));
        Assert.Equal((Percent(leastShare), $"{(leastShare / mean).ToString("0.0#", CultureInfo.InvariantCulture)} x the mean"), Cell(lines, $"idlest: expert {least}"));
        Assert.Equal($"ids outside 0 to {Experts - 1}, other than -1 (an empty slot)", Cell(lines, "invalid expert ids").Note);
    }

    /// <summary>The capacity's figures: slots kept of those routed, all batches' use and the fullest batch's, the batches that dropped.</summary>
    [Fact]
    public void TheCapacityFiguresAreTheBatches()
    {
        using var stats = ThreeBatches();
        Assert.Equal((18UL, 1UL), (stats.RoutedSlots, stats.SlotsDropped));

        var lines = Report(stats);

        Assert.Equal(("1", "beyond the capacity"), Cell(lines, "slots dropped"));
        Assert.Equal(((100.0 * 17 / 18).ToString("0.00", CultureInfo.InvariantCulture) + " %", "of the routed slots kept"), Cell(lines, "routing efficiency"));
        Assert.Equal(stats.CapacityStats.OverallUtilization().ToString("0.00", CultureInfo.InvariantCulture) + " %", Cell(lines, "slots used, all batches").Value);
        // The third batch fills each expert's 2 slots.
        Assert.Equal("100.00 %", Cell(lines, "slots used, fullest batch").Value);
        Assert.Equal("1", Cell(lines, "batches that dropped").Value);
    }

    /// <summary>Drops the batches reported, without a capacity, are shown as theirs.</summary>
    [Fact]
    public void DropsReportedWithoutACapacityAreShown()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        stats.RecordRouting([0, 1, 2, 3, 0, 1, 2, 3], tokens: 8, topK: 1, tokensDropped: 2);
        Assert.Equal(2UL, stats.SlotsDropped);

        var lines = Report(stats);

        Assert.Equal(("2", "as the recorded batches said"), Cell(lines, "slots dropped"));
        Assert.Equal(("over 1 % of slots dropped", "yes", "25 % of routed slots"), AlertChecks.Router(stats).ElementAt(1));
    }

    /// <summary>Losses print where either is recorded: a router without a load-balancing loss may have a z-loss.</summary>
    [Fact]
    public void AZLossAlonePrintsTheLosses()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1, loadBalanceLoss: 0f, routerZLoss: 0.25f);

        var lines = Report(stats);

        Assert.Contains("Router losses, mean per batch", lines);
        Assert.Equal("0.0000", Cell(lines, "load-balancing loss").Value);
        Assert.Equal("0.2500", Cell(lines, "router z-loss").Value);
    }

    /// <summary>Three batches are enough to judge a trend by (the fit's scatter): a steady climb reads as one.</summary>
    [Fact]
    public void ThreeBatchesAreJudged()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        for (var batch = 0; batch < 3; batch++)
        {
            stats.RecordRouting([.. Enumerable.Range(0, 8).Select(t => t < 2 + (2 * batch) ? 0 : 1 + (t % 3))], tokens: 8, topK: 1);
        }

        var fit = VarianceTrend.Of(stats.LoadVarianceHistory, RunReport.TrendWindow);
        Assert.Equal(3, fit.Batches);

        var lines = Report(stats);

        Assert.DoesNotContain(lines, line => line.Contains("too few batches", StringComparison.Ordinal));
    }

    /// <summary>
    /// A trend that stands out of the scatter says which way the imbalance goes: 20 batches whose expert 0 takes one
    /// token more each batch (variance 3b²/16 at batch b) grow; the same batches in reverse shrink.
    /// </summary>
    [Theory]
    [InlineData(false, "grows: +")]
    [InlineData(true, "shrinks: -")]
    public void AClearTrendSaysWhichWayTheImbalanceGoes(bool reversed, string expected)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        var batches = Enumerable.Range(0, 20).Select(b => reversed ? 19 - b : b);
        foreach (var b in batches)
        {
            stats.RecordRouting([.. Enumerable.Repeat(0, b + 1), 1, 2, 3], tokens: b + 4, topK: 1);
        }

        var lines = Report(stats);

        Assert.Contains(lines, line => line.Contains($"the imbalance {expected}", StringComparison.Ordinal) && line.EndsWith(" % of the mean variance across these batches", StringComparison.Ordinal));
    }

    /// <summary>One or two batches are too few to tell a trend from their scatter; the note counts them, in the singular for one.</summary>
    [Theory]
    [InlineData(1, "over the newest 1 batch (")]
    [InlineData(2, "over the newest 2 batches (")]
    public void FewerThanThreeBatchesAreTooFewToJudge(int batches, string counted)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        for (var batch = 0; batch < batches; batch++)
        {
            stats.RecordRouting([0, 0, 1, batch + 1], tokens: 4, topK: 1);
        }

        var lines = Report(stats);

        Assert.Contains(counted, Cell(lines, "load variance trend").Note, StringComparison.Ordinal);
        Assert.Contains(lines, line => line.Trim() == "too few batches to tell a trend from the batches' scatter");
    }

    /// <summary>A batch of padding alone has nothing to balance: 1 by convention, as a model's layer without load.</summary>
    [Fact]
    public void ABatchWithoutLoadIsBalancedByConvention()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        stats.RecordRouting([-1, -1], tokens: 2, topK: 1);
        Assert.All(stats.ExpertTokenCounts, count => Assert.Equal(0UL, count));

        Assert.Equal("1.000", Cell(Report(stats), "balancedness").Value);
    }

    /// <summary>The periodic line: the time so far in seconds past a minute, the busiest expert's share in %.</summary>
    [Fact]
    public void APeriodicLineIsInTheReportsUnits()
    {
        using var stats = ThreeBatches();
        var (most, share) = stats.MostUtilizedExpert()!.Value;

        var line = RunReport.Periodic(stats, 3, 10, TimeSpan.FromSeconds(83.4));

        Assert.StartsWith($"after 3 of 10 batches (83.4 s): 19 tokens; busiest expert {most} at {Percent(share)} of tokens; ", line, StringComparison.Ordinal);
    }

    /// <summary>A variance in the trend's note: decimals under 100, whole numbers from 100 up.</summary>
    [Theory]
    [InlineData(12.34567, "12.346")]
    [InlineData(99.99, "99.99")]
    [InlineData(123.4567, "123")]
    [InlineData(12345.6, "12,346")]
    public void AVarianceKeepsItsDecimalsUnder100(double variance, string expected) =>
        Assert.Equal(expected, RunReport.VarianceText(variance));

    /// <summary>The heading names the file that ran, which may hold a line break or a terminal escape: one line, as written.</summary>
    [Fact]
    public void AHeadingNamingAFileWithALineBreakIsItsFirstLineShownAsWritten()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });

        Assert.Equal(@"replay a\nb\u001b[31m.npy: 1 batch", Report(stats, "replay a\nb\u001b[31m.npy: 1 batch")[0]);
    }

    private static string[] Report(RoutingStats stats, string heading = "heading")
    {
        using var text = new StringWriter();
        RunReport.Print(text, stats, heading, engine: null, timed: "as this test timed it");
        return text.ToString().ReplaceLineEndings("\n").Split('\n');
    }

    /// <summary>A report line's value and note, by its label.</summary>
    private static (string Value, string Note) Cell(string[] lines, string label)
    {
        var line = Assert.Single(lines, line => line.Length > 36 && line[2..36].TrimEnd() == label);
        return (line[37..Math.Min(51, line.Length)].Trim(), line.Length > 54 ? line[54..] : "");
    }

    private static string Percent(float fraction) => (fraction * 100).ToString("0.00", CultureInfo.InvariantCulture) + " %";
}
