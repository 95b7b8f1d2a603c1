namespace MoeGpuStats.Tests.Managed;

public sealed class LatencyStatsTests
{
    /// <summary>The seed's percentile: clone, sort, index floor(p/100 * (n-1)).</summary>
    private static double SeedPercentile(IReadOnlyList<double> window, double p)
    {
        if (window.Count == 0)
        {
            return 0.0;
        }

        var sorted = window.ToArray();
        Array.Sort(sorted);
        var index = (int)(p / 100.0 * (sorted.Length - 1));
        return sorted[Math.Min(index, sorted.Length - 1)];
    }

    [Fact]
    public void PercentilesEqualTheSeedsSortOverASlidingWindowWithDuplicates()
    {
        var random = new Random(7);
        var latency = new LatencyStats();
        var reference = new List<double>();
        double[] ps = [0, 1, 33.3, 50, 90, 95, 99, 99.9, 100];
        for (var i = 0; i < 3500; i++)
        {
            // Few distinct values so that equal values are evicted and inserted often.
            var ticks = random.Next(0, 40) * 1000L;
            latency.RecordLatency(TimeSpan.FromTicks(ticks));
            reference.Add(LatencyStats.ToMilliseconds(TimeSpan.FromTicks(ticks)));
            if (reference.Count > LatencyStats.WindowSize)
            {
                reference.RemoveAt(0);
            }

            if (i % 97 == 0 || i > 3400)
            {
                foreach (var p in ps)
                {
                    Assert.Equal(SeedPercentile(reference, p), latency.Percentile(p));
                }
            }
        }

        Assert.Equal(reference, latency.RecentLatencies);
    }

    [Fact]
    public void MillisecondsAreComputedAsRustsDurationDoes()
    {
        // 1.0000001 s: secs + nanos / 1e9, then * 1000.
        var value = LatencyStats.ToMilliseconds(TimeSpan.FromTicks(10_000_001));
        Assert.Equal((1.0 + 100 / 1e9) * 1000.0, value);
    }

    [Fact]
    public void AnEmptyWindowAnswersZeroAndMinIsInfinity()
    {
        var latency = new LatencyStats();
        Assert.Equal(0.0, latency.P99Latency());
        Assert.Equal(double.PositiveInfinity, latency.MinLatencyMs);
        Assert.Equal(0.0, latency.AverageLatency());
    }
}
