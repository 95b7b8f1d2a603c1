
namespace MoeGpuStats.Cli.Output;

/// <summary>
/// How a report shows the spread of a run's times: the 95th percentile of the newest (at most
/// <see cref="LatencyStats.WindowSize"/>), or, of fewer than <see cref="MinForPercentile"/> times, the
/// slowest: the seed's percentile rank, <c>floor(0.95 (n − 1))</c>, picks the fastest of two.
/// </summary>
internal static class TimeSpread
{
    /// <summary>The fewest times whose 95th percentile a report shows: its rank is then at least the second slowest.</summary>
    public const int MinForPercentile = 20;

    /// <summary>
    /// The report's lines after the mean (label, value in milliseconds, note): the 95th percentile and the
    /// slowest of all, which a mean above the percentile comes from (a first call that compiles the kernels);
    /// of too few times for a percentile, the slowest alone.
    /// </summary>
    public static IEnumerable<(string Label, string Value, string Note)> Of(LatencyStats latency)
    {
        var count = latency.TotalMeasurements;
        if (count < MinForPercentile)
        {
            yield return ("slowest", Milliseconds(latency.MaxLatencyMs), $"of {count:N0}, too few for a 95th percentile");
            yield break;
        }

        yield return ("95th percentile", Milliseconds(latency.P95Latency()), $"of the newest {Math.Min(count, (ulong)LatencyStats.WindowSize):N0}");
        yield return ("slowest", Milliseconds(latency.MaxLatencyMs), $"of all {count:N0}");
    }

    /// <summary>A time in milliseconds as the reports print it.</summary>
    public static string Milliseconds(double ms) => FigureText.Fixed(ms, "#,0.000") + " ms";
}
