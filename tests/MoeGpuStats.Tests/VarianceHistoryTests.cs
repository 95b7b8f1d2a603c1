using System.Text.Json;

namespace MoeGpuStats.Tests;

/// <summary>
/// The managed engine's load variances, kept for a decode batch (at most 32 ids over more experts) as its ids and
/// for a larger one as a copy of its histogram, equal the seed's variance of each batch's histogram, computed here
/// directly: over runs that wrap the 1,000-batch history many times, read late, often, or through a snapshot; after a
/// restore of a full history; over decisions of different expert counts. Its trend equals the seed's formula.
/// </summary>
public sealed class VarianceHistoryTests
{
    [Theory]
    [InlineData(40, 0)]
    [InlineData(40, 333)]
    [InlineData(300, 0)]
    [InlineData(300, 1)]
    [InlineData(8, 0)]
    public void EveryBatchsVarianceIsTheSeedsOfItsHistogram(int experts, int readEvery)
    {
        var random = new Random(experts + readEvery);
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = experts });
        var expected = new List<float>();
        for (var batch = 0; batch < 2_600; batch++)
        {
            // Decode batches (1 to 32 ids), larger ones, none; padding, invalid ids and repeats among them.
            var topK = random.Next(1, 5);
            var tokens = batch % 9 == 4 ? 0 : batch % 3 == 0 ? random.Next(9, 40) : random.Next(1, 32 / topK + 1);
            var ids = new int[tokens * topK];
            for (var i = 0; i < ids.Length; i++)
            {
                ids[i] = random.Next(10) switch
                {
                    0 => -1,
                    1 => experts + random.Next(3),
                    2 => 0,
                    _ => random.Next(experts),
                };
            }

            stats.RecordRouting(ids, tokens, topK);
            expected.Add(SeedVariance(ids, experts));
            if (readEvery > 0 && batch % readEvery == readEvery - 1)
            {
                Assert.Equal(expected.TakeLast(1_000).Select(Bits), stats.LoadVarianceHistory.Select(Bits));
            }

            if (batch == 1_700)
            {
                using var snapshot = stats.Snapshot();
                Assert.Equal(expected.TakeLast(1_000).Select(Bits), snapshot.LoadVarianceHistory.Select(Bits));
            }
        }

        Assert.Equal(expected.TakeLast(1_000).Select(Bits), stats.LoadVarianceHistory.Select(Bits));
    }

    /// <summary>
    /// A state restored with a full history (1,000 computed variances) goes on as the original: each new batch's
    /// variance waits for a read and evicts the oldest restored one, which no read computes again (a restored
    /// variance has no histogram to compute it from).
    /// </summary>
    [Theory]
    [InlineData(8)]
    [InlineData(300)]
    public void ARestoredFullHistoryGoesOnAsTheOriginal(int experts)
    {
        var random = new Random(experts);
        using var original = new RoutingStats(new RoutingStatsOptions { Experts = experts });
        var expected = new List<float>();
        void Record(params RoutingStats[] stats)
        {
            var ids = Enumerable.Range(0, 16).Select(_ => random.Next(experts)).ToArray();
            foreach (var each in stats)
            {
                each.RecordRouting(ids, tokens: 16, topK: 1);
            }

            expected.Add(SeedVariance(ids, experts));
        }

        for (var batch = 0; batch < 1_200; batch++)
        {
            Record(original);
        }

        using var restored = JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(original))!;
        for (var batch = 0; batch < 3; batch++)
        {
            Record(original, restored);
            Assert.Equal(expected.TakeLast(1_000).Select(Bits), restored.LoadVarianceHistory.Select(Bits));
            Assert.Equal(expected.TakeLast(1_000).Select(Bits), original.LoadVarianceHistory.Select(Bits));
        }
    }

    /// <summary>
    /// Once the history has wrapped its ring (1,500 batches: the oldest kept sits mid-ring), a trend over a tail that
    /// crosses the ring's end equals the seed's over the same variances, read first (with every variance pending) or
    /// after the history.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ATrendAcrossTheRingsEndIsTheSeeds(bool historyFirst)
    {
        var random = new Random(17);
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 40 });
        var expected = new List<float>();
        for (var batch = 0; batch < 1_500; batch++)
        {
            var ids = Enumerable.Range(0, random.Next(1, 60)).Select(_ => random.Next(40)).ToArray();
            stats.RecordRouting(ids, ids.Length, topK: 1);
            expected.Add(SeedVariance(ids, 40));
        }

        if (historyFirst)
        {
            Assert.Equal(expected.TakeLast(1_000).Select(Bits), stats.LoadVarianceHistory.Select(Bits));
        }

        foreach (var window in new[] { 1_000, 999, 501, 500, 499, 2, 5_000 })
        {
            Assert.Equal(Bits(SeedTrend(expected.TakeLast(Math.Min(window, 1_000)).ToArray())), Bits(stats.RecentLoadVarianceTrend(window)));
        }
    }

    /// <summary>
    /// Decisions over different expert counts, among them 5,000, too wide to defer within the window's budget (1,000
    /// batches of 5,000 counts pass its 4 Mi): those are computed as they come, the others when read, each the seed's
    /// variance of its own histogram.
    /// </summary>
    [Fact]
    public void DecisionsOfDifferentExpertCountsKeepTheirOwnVariances()
    {
        var random = new Random(19);
        using var stats = new RoutingStats();
        var expected = new List<float>();
        foreach (var experts in new[] { 4, 8, 5_000, 4, 300, 5_000, 8 })
        {
            var counts = Enumerable.Range(0, experts).Select(_ => random.Next(6)).ToArray();
            stats.RecordRouting(new RoutingDecision { ExpertCapacities = counts, TotalTokens = counts.Sum() });
            expected.Add(SeedVarianceOfCounts(counts));
        }

        Assert.Equal(expected.Select(Bits), stats.LoadVarianceHistory.Select(Bits));
    }

    /// <summary>The seed's <c>recent_load_variance_trend</c> over the variances it keeps: the f32 least-squares slope, each sum in order.</summary>
    private static float SeedTrend(float[] variances)
    {
        if (variances.Length < 2)
        {
            return 0f;
        }

        float n = variances.Length;
        float sumX = 0f, sumY = 0f, sumXy = 0f, sumX2 = 0f;
        for (var i = 0; i < variances.Length; i++)
        {
            float x = i;
            sumX += x;
            sumY += variances[i];
            sumXy += x * variances[i];
            sumX2 += x * x;
        }

        var denominator = n * sumX2 - sumX * sumX;
        return MathF.Abs(denominator) < RoutingMath.RustF32Epsilon ? 0f : (n * sumXy - sumX * sumY) / denominator;
    }

    /// <summary>The seed's variance of the histogram of <paramref name="ids"/> (those in <c>[0, experts)</c>).</summary>
    private static float SeedVariance(int[] ids, int experts)
    {
        var counts = new int[experts];
        foreach (var id in ids.Where(id => id >= 0 && id < experts))
        {
            counts[id]++;
        }

        return SeedVarianceOfCounts(counts);
    }

    /// <summary>The seed's <c>calculate_load_variance</c>: the f32 population variance of the histogram, summed in order.</summary>
    private static float SeedVarianceOfCounts(int[] counts)
    {
        var experts = counts.Length;
        var mean = (float)counts.Sum() / experts;
        var total = 0f;
        foreach (var count in counts)
        {
            var difference = count - mean;
            total += difference * difference;
        }

        return total / experts;
    }

    private static int Bits(float value) => BitConverter.SingleToInt32Bits(value);

    /// <summary>
    /// The managed engine's trend reads the history without the lock (its docs: it may see a batch in part), so a
    /// reset on another thread comes between its reads, many times here: each read still answers a finite slope,
    /// never an index outside the history.
    /// </summary>
    [Fact]
    public void TheTrendReadDuringResetsNeverThrows()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 64 });
        int[] ids = [.. Enumerable.Range(0, 32)];
        var stop = false;
        var resets = new Thread(() =>
        {
            for (var i = 0; i < 200_000 && !Volatile.Read(ref stop); i++)
            {
                stats.Reset();
                for (var batch = 0; batch < 3; batch++)
                {
                    stats.RecordRouting(ids, 8, 4);
                }
            }
        });
        var reads = 0;
        resets.Start();
        try
        {
            while (resets.IsAlive)
            {
                Assert.True(float.IsFinite(stats.RecentLoadVarianceTrend(1000)));
                reads++;
            }
        }
        finally
        {
            // The statistics outlive the other thread's last call, whatever the reads did.
            Volatile.Write(ref stop, true);
            resets.Join();
        }

        // The reads overlapped the resets: the first ran while the other thread was alive.
        Assert.True(reads > 0);
    }
}
