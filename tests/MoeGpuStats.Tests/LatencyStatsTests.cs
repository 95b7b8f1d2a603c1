using static MoeGpuStats.Tests.Support.ConcurrentLatencies;
using static MoeGpuStats.Tests.Support.Decisions;

namespace MoeGpuStats.Tests;

/// <summary><see cref="LatencyStats"/>: percentiles equal to the seed's sort, its units, bad input, concurrent readers and recorders.</summary>
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

    /// <summary>
    /// The sorted copy catches up on read: by replaying up to <c>PercentileWindow.ReplayLimit</c>
    /// logged records (inserts while the window fills, then replacements) or by sorting afresh.
    /// Gaps between reads cross every boundary: within the fill, across the moment the window
    /// becomes full, at the limit and one past it, longer than the window.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(999)]
    [InlineData(2500)]
    public void PercentilesAreExactWhateverTheGapBetweenReads(int gap)
    {
        var random = new Random(gap);
        var latency = new LatencyStats();
        var reference = new List<double>();
        for (var i = 1; i <= 4000; i++)
        {
            var ticks = random.Next(0, 25) * 1000L + (i % 3);
            latency.RecordLatency(TimeSpan.FromTicks(ticks));
            reference.Add(LatencyStats.ToMilliseconds(TimeSpan.FromTicks(ticks)));
            if (reference.Count > LatencyStats.WindowSize)
            {
                reference.RemoveAt(0);
            }

            if (i % gap == 0 || i == 970 || i == 1000 || i == 1001)
            {
                Assert.Equal(SeedPercentile(reference, 0), latency.Percentile(0));
                Assert.Equal(SeedPercentile(reference, 50), latency.Percentile(50));
                Assert.Equal(SeedPercentile(reference, 99), latency.P99Latency());
                Assert.Equal(SeedPercentile(reference, 100), latency.Percentile(100));
            }

            if (i == 3000)
            {
                latency.Reset();
                reference.Clear();
            }
        }
    }

    [Fact]
    public void ConcurrentReadersAfterRecordsAllSeeTheSeedsPercentiles()
    {
        var latency = new LatencyStats();
        var reference = new List<double>();
        for (var round = 0; round < 20; round++)
        {
            for (var i = 0; i < 30 + round * 7; i++)
            {
                var ticks = (round * 7919L + i * 104_729L) % 50_000;
                latency.RecordLatency(TimeSpan.FromTicks(ticks));
                reference.Add(LatencyStats.ToMilliseconds(TimeSpan.FromTicks(ticks)));
            }

            var window = reference.TakeLast(LatencyStats.WindowSize).ToList();
            double[] expected = [SeedPercentile(window, 5), SeedPercentile(window, 50), SeedPercentile(window, 99)];
            var results = new double[4][];
            var failures = new Exception?[results.Length];
            using var start = new Barrier(results.Length);
            var readers = Enumerable.Range(0, results.Length).Select(r => new Thread(() =>
            {
                start.SignalAndWait();
                try
                {
                    results[r] = [latency.Percentile(5), latency.Percentile(50), latency.P99Latency()];
                }
                catch (Exception e)
                {
                    failures[r] = e;
                }
            })).ToArray();
            Array.ForEach(readers, reader => reader.Start());
            Array.ForEach(readers, reader => reader.Join());
            Assert.All(failures, Assert.Null);
            Assert.All(results, result => Assert.Equal(expected, result));
        }
    }

    /// <summary>A restore replaces the whole state, the window included, even of statistics that recorded before.</summary>
    [Fact]
    public void ARestoreReplacesTheWindowOfUsedStatistics()
    {
        var latency = new LatencyStats();
        foreach (var ms in new[] { 9.0, 8, 7, 0.5 })
        {
            latency.RecordLatency(TimeSpan.FromMilliseconds(ms));
        }

        _ = latency.P99Latency();
        latency.Restore(totalMeasurements: 2, totalLatencyMs: 3, minLatencyMs: 1, maxLatencyMs: 2, recent: [2.0, 1.0]);

        Assert.Equal(new[] { 2.0, 1.0 }, latency.RecentLatencies);
        Assert.Equal((1.0, 2.0), (latency.Percentile(0), latency.Percentile(100)));
        Assert.Equal((2UL, 3.0, 1.0, 2.0), (latency.TotalMeasurements, latency.TotalLatencyMs, latency.MinLatencyMs, latency.MaxLatencyMs));
    }

    [Theory]
    [InlineData(-0.001)]
    [InlineData(100.001)]
    [InlineData(double.NaN)]
    public void APercentileOutsideTheRangeIsRejected(double p)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Seeded().RoutingLatencyStats.Percentile(p));
        Assert.Equal("p", error.ParamName);
    }

    [Fact]
    public void ConcurrentRecordsOnLatencyStatsKeepEveryLatency()
    {
        var latency = new LatencyStats();
        var expected = RecordConcurrently(latency.RecordLatency, () => _ = latency.RecentLatencies.Count + latency.AverageLatency());
        AssertExact(expected, latency);
    }

    /// <summary>
    /// A latency onto measurements at 2^63 − 1 (statistics read from a file near it) is refused, the statistics
    /// unchanged, as a merge refuses such a sum: the count was written past it and the snapshot refused on reading.
    /// </summary>
    [Fact]
    public void ALatencyPastTheLargestMeasurementCountIsRefused()
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(MoeGpuStats.Tests.Support.Snapshots.Snapshot(totalTokens: 2, tokensDropped: 0))!;
        node["routing_latency_stats"] = System.Text.Json.Nodes.JsonNode.Parse(
            $$"""{"total_measurements":{{long.MaxValue}},"total_latency_ms":0,"min_latency_ms":0,"max_latency_ms":0,"recent_latencies":[{{string.Join(',', Enumerable.Repeat(0, 1_000))}}]}""");
        using var stats = System.Text.Json.JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
        var before = System.Text.Json.JsonSerializer.Serialize(stats);

        var error = Assert.Throws<InvalidOperationException>(() => stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(1)));

        Assert.Equal("This latency would take total_measurements past 9,223,372,036,854,775,807, the most a snapshot holds; the statistics are unchanged: record into new statistics.", error.Message);
        Assert.Equal(before, System.Text.Json.JsonSerializer.Serialize(stats));
    }
}
