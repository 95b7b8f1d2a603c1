using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>The spread of a run's times as the reports print it: the slowest alone of too few, else the 95th percentile of the newest and the slowest of all.</summary>
public sealed class TimeSpreadTests
{
    /// <summary>19 times are too few for a 95th percentile; 20 have one, the seed's rank floor(0.95 × 19) = 18 of 0 to 19 ms: 18 ms.</summary>
    [Fact]
    public void TwentyTimesHaveA95thPercentileAndNineteenDoNot()
    {
        var latency = Times(19);
        Assert.Equal([("slowest", "18.000 ms", "of 19, too few for a 95th percentile")], TimeSpread.Of(latency));

        latency.RecordLatency(TimeSpan.FromMilliseconds(19));
        Assert.Equal([("95th percentile", "18.000 ms", "of the newest 20"), ("slowest", "19.000 ms", "of all 20")], TimeSpread.Of(latency));
    }

    /// <summary>The percentile is over the newest times the statistics keep: of more, the note counts those, the slowest all.</summary>
    [Fact]
    public void ThePercentileCountsTheNewestTimesKept()
    {
        var latency = Times(LatencyStats.WindowSize + 5);

        var (_, _, note) = TimeSpread.Of(latency).First();

        Assert.Equal($"of the newest {LatencyStats.WindowSize:N0}", note);
        Assert.Equal($"of all {LatencyStats.WindowSize + 5:N0}", TimeSpread.Of(latency).Last().Note);
    }

    [Theory]
    [InlineData(0.0004, "0.000 ms")]
    [InlineData(1.23456, "1.235 ms")]
    [InlineData(1234.5, "1,234.500 ms")]
    public void MillisecondsKeepThreeDecimals(double ms, string expected) =>
        Assert.Equal(expected, TimeSpread.Milliseconds(ms));

    /// <summary>Times of 0, 1, 2, ... ms, <paramref name="count"/> of them.</summary>
    private static LatencyStats Times(int count)
    {
        var latency = new LatencyStats();
        for (var ms = 0; ms < count; ms++)
        {
            latency.RecordLatency(TimeSpan.FromMilliseconds(ms));
        }

        return latency;
    }
}
