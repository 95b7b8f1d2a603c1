using System.Globalization;

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

    /// <summary>The report line's label, value in milliseconds and note.</summary>
    public static (string Label, string Value, string Note) Of(LatencyStats latency)
    {
        var count = latency.TotalMeasurements;
        return count >= MinForPercentile
            ? ("95th percentile", Milliseconds(latency.P95Latency()), $"of the newest {Math.Min(count, (ulong)LatencyStats.WindowSize):N0}")
            : ("slowest", Milliseconds(latency.MaxLatencyMs), $"of {count:N0}, too few for a 95th percentile");
    }

    /// <summary>A time in milliseconds as the reports print it.</summary>
    public static string Milliseconds(double ms) => ms.ToString("#,0.000", CultureInfo.InvariantCulture) + " ms";
}
