using System.Text.Json;
using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Engines;
using MoeGpuStats.Tests.Conformance;
using static MoeGpuStats.Tests.Support.ConcurrentLatencies;
using static MoeGpuStats.Tests.Support.Decisions;
using static MoeGpuStats.Tests.Support.Snapshots;

namespace MoeGpuStats.Tests;

/// <summary>
/// <see cref="RoutingStats"/> on the managed engine: what a record counts, the queries, bad input
/// (a clear exception naming the argument, and the statistics left as they were), merges, concurrent
/// latency records, long runs, and <see cref="RoutingStats.Create"/>'s choice of engine.
/// </summary>
public sealed class RoutingStatsTests
{
    /// <summary>
    /// The load variances are computed when first read, which writes the window: a read on another thread
    /// while one records must not clear a batch just added as pending, whose variance would then keep its
    /// slot's old value for good. Every variance must equal that of the same batches recorded alone.
    /// </summary>
    [Fact]
    public async Task AVarianceReadOnAnotherThreadNeverLeavesABatchsVarianceWrong()
    {
        const int Experts = 64, Tokens = 16, TopK = 2, Batches = 4000;
        var random = new Random(12);
        var batches = Enumerable.Range(0, Batches).Select(_ => Enumerable.Range(0, Tokens * TopK).Select(_ => random.Next(Experts)).ToArray()).ToArray();
        using var shared = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        using var alone = new RoutingStats(new RoutingStatsOptions { Experts = Experts });
        var done = 0;
        void ReadTheNewest()
        {
            while (Volatile.Read(ref done) == 0)
            {
                var history = shared.LoadVarianceHistory;
                if (history.Count > 0)
                {
                    _ = history[history.Count - 1];
                }
            }
        }

        var reader = Task.Run(ReadTheNewest, TestContext.Current.CancellationToken);

        foreach (var ids in batches)
        {
            shared.RecordRouting(ids, Tokens, TopK);
        }

        Volatile.Write(ref done, 1);
        await reader;
        foreach (var ids in batches)
        {
            alone.RecordRouting(ids, Tokens, TopK);
        }

        Assert.Equal(alone.LoadVarianceHistory.ToArray(), shared.LoadVarianceHistory.ToArray());
    }

    [Fact]
    public void TiesFollowRustsMaxByAndMinBy()
    {
        using var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 3, 3, 1], TotalTokens = 8 });
        Assert.Equal(2, stats.MostUtilizedExpert()!.Value.Index);
        Assert.Equal(0, stats.LeastUtilizedExpert()!.Value.Index);
    }

    [Fact]
    public void TheHistoryKeepsTheNewestThousandVariancesOldestFirst()
    {
        using var stats = new RoutingStats();
        for (var i = 0; i < 1234; i++)
        {
            stats.RecordRouting(new RoutingDecision { ExpertCapacities = [i, 0], TotalTokens = i });
        }

        Assert.Equal(1000, stats.LoadVarianceHistory.Count);
        Assert.Equal(234f * 234f / 4f, stats.LoadVarianceHistory[0]);
        Assert.Equal(1233f * 1233f / 4f, stats.LoadVarianceHistory[^1]);
    }

    [Fact]
    public void ChangingTheExpertCountRestartsPerExpertState()
    {
        using var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [4, 4], TotalTokens = 8 });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2, 3], TotalTokens = 6 });
        Assert.Equal([1UL, 2UL, 3UL], stats.ExpertTokenCounts);
        Assert.Equal(2UL, stats.TotalRoutings);
    }

    [Fact]
    public void IdsAreCountedWithInvalidOnesSetAside()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 3 });
        stats.RecordRouting([0, 2, 2, -2, 3, 1], tokens: 3, topK: 2);
        Assert.Equal([1UL, 1UL, 2UL], stats.ExpertTokenCounts);
        Assert.Equal(2UL, stats.InvalidExpertIds);
        Assert.Equal(3UL, stats.TotalTokens);
    }

    [Fact]
    public void AGivenCapacityDerivesDropsAndCapacityStats()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2, ExpertCapacity = 2 });
        stats.RecordRouting([0, 0, 0, 0, 1, 1], tokens: 6, topK: 1);
        Assert.Equal(2UL, stats.SlotsDropped);
        Assert.Equal(6UL, stats.RoutedSlots);
        Assert.Equal(0UL, stats.TokensDropped);
        Assert.Equal(4f / 6 * 100, stats.RoutingEfficiency);
        Assert.Equal(4UL, stats.CapacityStats.TotalCapacity);
        Assert.Equal(4UL, stats.CapacityStats.TotalUsed);
        Assert.Equal(1UL, stats.CapacityStats.CapacityExceededCount);
        Assert.Equal(1.0f, stats.CapacityStats.PeakUtilization);
    }

    [Fact]
    public void DecayedUtilizationFollowsItsFormula()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { UtilizationDecay = 0.5f });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [4, 0], TotalTokens = 4 });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [0, 4], TotalTokens = 4 });
        Assert.Equal([0.25f, 0.5f], stats.DecayedExpertUtilization);
        Assert.Equal([0.5f, 0.5f], stats.ExpertUtilization);
    }

    /// <summary>
    /// With a decay near 1 the average keeps approaching the share: kept in f32, <c>d × u + (1 − d) × share</c> stops
    /// moving once the step is under half a unit in u's last place, here about 0.002 below 1/3 (0.6 %) where the
    /// exact average, <c>share × (1 − d^n)</c>, is within 1e-7 of the share.
    /// </summary>
    [Fact]
    public void DecayedUtilizationApproachesTheShareWhereFloat32Stalls()
    {
        const float decay = 1f - (1f / 65_536);
        const int batches = 1_200_000;
        using var stats = new RoutingStats(new RoutingStatsOptions { UtilizationDecay = decay });
        var decision = new RoutingDecision { ExpertCapacities = [1, 2], TotalTokens = 3 };
        for (var i = 0; i < batches; i++)
        {
            stats.RecordRouting(decision);
        }

        var approach = 1 - Math.Pow(decay, batches);
        double[] expected = [approach * (1f / 3), approach * (2f / 3)];
        for (var e = 0; e < expected.Length; e++)
        {
            Assert.InRange(stats.DecayedExpertUtilization[e], expected[e] * (1 - 1e-6), expected[e] * (1 + 1e-6));
        }
    }

    /// <summary>A decay of 0, the lower bound, is allowed: the decayed utilization is then the last batch's share alone.</summary>
    [Theory]
    [InlineData("managed")]
    [InlineData("cpu")]
    public void ADecayOfZeroFollowsTheLastBatch(string engine)
    {
        var options = new RoutingStatsOptions { Experts = 2, UtilizationDecay = 0f };
        using var stats = RecordSemanticsTests.Create(engine, options);
        stats.RecordRouting([0, 0, 0, 1], tokens: 4, topK: 1);
        Assert.Equal([0.75f, 0.25f], stats.DecayedExpertUtilization);
        stats.RecordRouting([1, 1], tokens: 2, topK: 1);
        Assert.Equal([0f, 1f], stats.DecayedExpertUtilization);
    }

    [Fact]
    public void ResetClearsEverythingButTheOptions()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { ExpertCapacity = 7 });
        Decisions.Feed(stats, new Random(3), 50);
        stats.Reset();
        Assert.Equal(0UL, stats.TotalRoutings);
        Assert.Empty(stats.ExpertUtilization);
        Assert.Empty(stats.LoadVarianceHistory);
        Assert.Equal(0UL, stats.RoutingLatencyStats.TotalMeasurements);
        Assert.Equal(7, stats.CapacityStats.SlotsPerExpert);
    }

    [Fact]
    public void RecordingAllocatesNothingOnceTheWindowsAreFull()
    {
        using var stats = new RoutingStats();
        var decisions = Enumerable.Range(0, 8)
            .Select(i => new RoutingDecision { ExpertCapacities = [.. Enumerable.Range(0, 256).Select(e => (e * 7 + i) % 300)], TotalTokens = 9000, TokensDropped = i })
            .ToArray();
        for (var i = 0; i < 2500; i++)
        {
            stats.RecordRouting(decisions[i % decisions.Length]);
            stats.RecordRoutingLatency(TimeSpan.FromTicks(1000 + i * 37 % 5000));
        }

        // The steady state allocates nothing; a round may still see the runtime's tiered
        // recompilation land (its call counting starts 100 ms after startup), so up to five rounds.
        long allocated = -1;
        for (var round = 0; round < 5 && allocated != 0; round++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 5000; i++)
            {
                stats.RecordRouting(decisions[i % decisions.Length]);
                stats.RecordRoutingLatency(TimeSpan.FromTicks(1000 + i * 37 % 5000));
            }

            allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Assert.Equal(0, allocated);
    }

    [Theory]
    [MemberData(nameof(BadDecisions), MemberType = typeof(Decisions))]
    public void ABadDecisionIsRejectedAndChangesNothing(string kind)
    {
        using var stats = Seeded();
        var before = JsonSerializer.Serialize(stats);

        var (decision, refusal) = Bad(kind);

        var error = Assert.ThrowsAny<ArgumentException>(() => stats.RecordRouting(decision));

        Assert.Equal("routingDecision", error.ParamName);
        Assert.StartsWith(refusal, error.Message);
        Assert.Equal(before, JsonSerializer.Serialize(stats));
    }

    /// <summary>An expert count beyond <see cref="RoutingStatsOptions.MaxExperts"/> is refused when the options are checked (int.MaxValue experts ran out of memory at the first record).</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(RoutingStatsOptions.MaxExperts + 1)]
    [InlineData(int.MaxValue)]
    public void AnExpertCountOutsideTheLimitIsRefused(int experts)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new RoutingStats(new RoutingStatsOptions { Experts = experts }));
        Assert.Equal("Experts", error.ParamName);
        Assert.StartsWith($"Experts is {experts}; give 1 to 1,048,576.", error.Message);
        using var largest = new RoutingStats(new RoutingStatsOptions { Experts = RoutingStatsOptions.MaxExperts });
        largest.RecordRouting([RoutingStatsOptions.MaxExperts - 1], tokens: 1, topK: 1);
        Assert.Equal(1UL, largest.ExpertTokenCounts[^1]);
    }

    [Fact]
    public void ANullDecisionNamesTheArgument() =>
        Assert.Equal("routingDecision", Assert.Throws<ArgumentNullException>(() => new RoutingStats().RecordRouting(null!)).ParamName);

    [Fact]
    public void ANegativeLatencyIsRejected()
    {
        using var stats = Seeded();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => stats.RecordRoutingLatency(TimeSpan.FromTicks(-1)));
        Assert.Equal("latency", error.ParamName);
        Assert.Equal(1UL, stats.RoutingLatencyStats.TotalMeasurements);
    }

    [Fact]
    public void ANegativeWindowIsRejected() =>
        Assert.Equal("window", Assert.Throws<ArgumentOutOfRangeException>(() => Seeded().RecentLoadVarianceTrend(-1)).ParamName);

    [Fact]
    public void IdsShorterThanTokensTimesKAreRejected()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        var error = Assert.Throws<ArgumentException>(() => stats.RecordRouting([0, 1, 2], tokens: 2, topK: 2));
        Assert.Equal("topKExpertIds", error.ParamName);
        Assert.Contains("2 * 2 = 4", error.Message);
        Assert.Equal(0UL, stats.TotalRoutings);
    }

    [Fact]
    public void TopKBelowOneIsRejected()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        Assert.Equal("topK", Assert.Throws<ArgumentOutOfRangeException>(() => stats.RecordRouting([0, 1], tokens: 2, topK: 0)).ParamName);
    }

    [Fact]
    public void IdsWithoutAnExpertCountAreRejected()
    {
        using var stats = new RoutingStats();
        Assert.Throws<InvalidOperationException>(() => stats.RecordRouting([0, 1], tokens: 2, topK: 1));
    }

    [Fact]
    public void ADisposedInstanceRefusesWork()
    {
        var stats = Seeded();
        stats.Dispose();
        Assert.Throws<ObjectDisposedException>(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1], TotalTokens = 1 }));
        Assert.Equal("This RoutingStats was disposed.", Assert.Throws<ObjectDisposedException>(() => stats.TotalRoutings).Message);
    }

    [Theory]
    [InlineData(0, null, null)]
    [InlineData(null, 0, null)]
    [InlineData(null, null, 1.0f)]
    [InlineData(null, null, -0.1f)]
    public void OptionsOutOfRangeAreRejected(int? experts, int? capacity, float? decay) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new RoutingStats(new RoutingStatsOptions { Experts = experts, ExpertCapacity = capacity, UtilizationDecay = decay }));

    [Fact]
    public void NullOptionsNameTheArgument() =>
        Assert.Equal("options", Assert.Throws<ArgumentNullException>(() => new RoutingStats((RoutingStatsOptions)null!)).ParamName);

    /// <summary>Host ids with a non-finite z-loss are refused naming it, as a non-finite load-balancing loss is: the average would turn NaN for good.</summary>
    [Fact]
    public void HostIdsWithANonFiniteZLossAreRejectedAndChangeNothing()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2, routerZLoss: 0.5f);
        var before = JsonSerializer.Serialize(stats);

        var error = Assert.Throws<ArgumentException>(() => stats.RecordRouting([0, 1], tokens: 1, topK: 2, routerZLoss: float.NaN));

        Assert.Equal("routerZLoss", error.ParamName);
        Assert.StartsWith("routerZLoss is NaN; losses must be finite.", error.Message);
        Assert.Equal(before, JsonSerializer.Serialize(stats));
        Assert.Equal(0.5f, stats.AverageRouterZLoss);
    }

    /// <summary>Ids on a device, recorded on the managed engine, are checked as host ids are: more drops than tokens are refused naming the argument.</summary>
    [Fact]
    public void DeviceIdsWithMoreDropsThanTokensAreRejectedAndChangeNothing()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        using var ids = accelerator.Allocate1D(new[] { 0, 1, 2, 3 });
        stats.RecordRouting(ids.View, tokens: 2, topK: 2, tokensDropped: 1);
        var before = JsonSerializer.Serialize(stats);

        var error = Assert.Throws<ArgumentException>(() => stats.RecordRouting(ids.View, tokens: 2, topK: 2, tokensDropped: 3));

        Assert.Equal("tokensDropped", error.ParamName);
        Assert.StartsWith("tokensDropped is 3; it must lie in [0, tokens = 2].", error.Message);
        Assert.Equal(before, JsonSerializer.Serialize(stats));
        Assert.Equal(1UL, stats.TokensDropped);
    }

    /// <summary>The latency hook (the telemetry's histogram) hears each latency recorded, once, and never one refused.</summary>
    [Fact]
    public void TheLatencyHookHearsEveryRecordedLatencyAndNoRefusedOne()
    {
        using var stats = new RoutingStats();
        var heard = new List<double>();
        stats.LatencyRecorded += heard.Add;

        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(2));
        Assert.Throws<ArgumentOutOfRangeException>(() => stats.RecordRoutingLatency(TimeSpan.FromTicks(-1)));
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(0.5));

        Assert.Equal(new[] { 2.0, 0.5 }, heard);
        Assert.Equal(2UL, stats.RoutingLatencyStats.TotalMeasurements);
    }

    /// <summary>
    /// Before the first record there is no most or least utilized expert and the summary holds no utilization (the
    /// seed's <c>utilization_summary</c> of an empty vector); after it, the summary's figures are the utilization's.
    /// </summary>
    [Fact]
    public void TheUtilizationQueriesFollowTheUtilization()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        Assert.Null(stats.MostUtilizedExpert());
        Assert.Null(stats.LeastUtilizedExpert());
        Assert.Equal(new[] { "average_load_balance_loss", "average_router_z_loss", "routing_efficiency" }, stats.UtilizationSummary().Keys.Order());

        stats.RecordRouting([0, 0, 0, 1, 1, 2], tokens: 6, topK: 1);
        stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);

        var utilization = stats.ExpertUtilization.ToArray();
        var summary = stats.UtilizationSummary();
        Assert.Equal(7, summary.Count);
        Assert.Equal(utilization.Min(), summary["min_utilization"]);
        Assert.Equal(utilization.Max(), summary["max_utilization"]);
        Assert.Equal(utilization.Average(), (double)summary["mean_utilization"], 6);
        Assert.True(summary["min_utilization"] < summary["max_utilization"]);
        Assert.Equal((0, utilization[0]), stats.MostUtilizedExpert()!.Value);
        Assert.Equal((3, utilization[3]), stats.LeastUtilizedExpert()!.Value);
    }

    [Fact]
    public void ThroughputBeforeTheFirstBatchIsZeroTokensPerRouting()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        Assert.Equal(new ThroughputStats(0, 0, 0f, 0f, 0.0), stats.GetThroughputStats());
        stats.RecordRouting([0, 1, 1], tokens: 3, topK: 1);
        stats.RecordRouting([1], tokens: 1, topK: 1);
        Assert.Equal(2f, stats.GetThroughputStats().TokensPerRouting);
    }

    /// <summary>A reset refused because the statistics were disposed clears nothing: a latency object held from before keeps its measurements.</summary>
    [Fact]
    public void AResetRefusedAfterADisposeLeavesTheLatencies()
    {
        var stats = new RoutingStats();
        var latency = stats.RoutingLatencyStats;
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(3));
        stats.Dispose();

        Assert.Throws<ObjectDisposedException>(() => stats.Reset());

        Assert.Equal(1UL, latency.TotalMeasurements);
        Assert.Equal(3.0, latency.AverageLatency());
    }

    /// <summary>A snapshot carries the latencies recorded so far, and keeps them apart: latencies recorded after it go to one side only.</summary>
    [Fact]
    public void ASnapshotCarriesTheLatenciesApart()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        foreach (var microseconds in new[] { 120, 80, 300 })
        {
            stats.RecordRoutingLatency(TimeSpan.FromMicroseconds(microseconds));
        }

        using var snapshot = stats.Snapshot();
        var before = JsonSerializer.Serialize(stats.RoutingLatencyStats);
        Assert.Equal(before, JsonSerializer.Serialize(snapshot.RoutingLatencyStats));
        Assert.Equal(3UL, snapshot.RoutingLatencyStats.TotalMeasurements);

        stats.RecordRoutingLatency(TimeSpan.FromMicroseconds(900));
        snapshot.RecordRoutingLatency(TimeSpan.FromMicroseconds(10));
        Assert.Equal(4UL, stats.RoutingLatencyStats.TotalMeasurements);
        Assert.Equal(0.9, stats.RoutingLatencyStats.MaxLatencyMs, 12);
        Assert.Equal(4UL, snapshot.RoutingLatencyStats.TotalMeasurements);
        Assert.Equal(0.3, snapshot.RoutingLatencyStats.MaxLatencyMs, 12);
    }

    /// <summary>
    /// Statistics put over a device engine own it: their dispose disposes the engine (its memory freed), as
    /// <see cref="RoutingStats.OnDevice(DeviceRoutingStats)"/> says. The engine then refuses in their name: a call on
    /// the statistics that passed their own check just before another thread disposed them reaches the engine, and its
    /// caller knows the statistics, not the engine's type.
    /// </summary>
    [Fact]
    public void DisposingStatisticsOverADeviceEngineDisposesTheEngine()
    {
        var device = new DeviceRoutingStats(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = 4 });
        var stats = RoutingStats.OnDevice(device);
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);

        stats.Dispose();

        Assert.Equal("This RoutingStats was disposed.", Assert.Throws<ObjectDisposedException>(() => device.ReadTokenCounts()).Message);
        Assert.Equal("This RoutingStats was disposed.", Assert.Throws<ObjectDisposedException>(() => device.RecordRouting([0], 1, 1)).Message);
    }

    [Fact]
    public void MergingRanksGivesExactCountsAndBatchWeightedAverages()
    {
        using var whole = new RoutingStats();
        using var rank0 = new RoutingStats();
        using var rank1 = new RoutingStats();
        var random = new Random(21);
        for (var i = 0; i < 600; i++)
        {
            var counts = new int[6];
            for (var e = 0; e < counts.Length; e++)
            {
                counts[e] = random.Next(0, 100) * (e + 1);
            }

            var decision = new RoutingDecision { ExpertCapacities = counts, TotalTokens = counts.Sum() / 2, TokensDropped = random.Next(0, 3), LoadBalanceLoss = (float)random.NextDouble() };
            whole.RecordRouting(decision);
            (random.Next(3) == 0 ? rank0 : rank1).RecordRouting(decision);
            var latency = TimeSpan.FromTicks(random.Next(1, 100_000));
            whole.RecordRoutingLatency(latency);
            rank0.RecordRoutingLatency(latency);
        }

        using var merged = RoutingStats.Merge([rank0, rank1]);

        Assert.Equal(whole.ExpertTokenCounts, merged.ExpertTokenCounts);
        Assert.Equal(whole.TotalTokens, merged.TotalTokens);
        Assert.Equal(whole.TokensDropped, merged.TokensDropped);
        Assert.Equal(whole.TotalRoutings, merged.TotalRoutings);
        Assert.Equal(whole.RoutingEfficiency, merged.RoutingEfficiency);
        Assert.Equal(whole.CapacityStats.TotalUsed, merged.CapacityStats.TotalUsed);
        Assert.Equal(whole.CapacityStats.CapacityExceededCount, merged.CapacityStats.CapacityExceededCount);
        for (var e = 0; e < 6; e++)
        {
            Assert.Equal(whole.ExpertUtilization[e], merged.ExpertUtilization[e], 1e-4 * whole.ExpertUtilization[e]);
        }

        Assert.Equal(whole.AverageLoadBalanceLoss, merged.AverageLoadBalanceLoss, 1e-4);
        Assert.Equal(whole.RoutingLatencyStats.TotalMeasurements, merged.RoutingLatencyStats.TotalMeasurements);
        Assert.Equal(whole.RoutingLatencyStats.MaxLatencyMs, merged.RoutingLatencyStats.MaxLatencyMs);
    }

    /// <summary>
    /// The figures the merge above leaves unchecked, against one collector that saw the first part's
    /// routings and then the second's: the peak capacity use is the larger peak, the router z-loss
    /// averages over every routing, the fastest latency is the faster part's, and the variance history
    /// and recent latencies keep the newest (1,200 routings, more than either window holds). The average
    /// capacity use, an exponential average per part, merges as the parts' averages weighted by routings.
    /// </summary>
    [Fact]
    public void MergingKeepsThePeakTheFastestLatencyAndTheNewestWindows()
    {
        using var whole = new RoutingStats();
        using var rank0 = new RoutingStats();
        using var rank1 = new RoutingStats();
        var random = new Random(22);
        foreach (var (rank, routings, scale) in new[] { (rank0, 700, 1), (rank1, 500, 3) })
        {
            for (var i = 0; i < routings; i++)
            {
                var counts = Enumerable.Range(0, 6).Select(e => random.Next(0, 60 * scale) * (e + 1)).ToArray();
                var decision = new RoutingDecision { ExpertCapacities = counts, TotalTokens = counts.Sum() / 2, TokensDropped = random.Next(0, 3), RouterZLoss = (float)random.NextDouble() * scale };
                whole.RecordRouting(decision);
                rank.RecordRouting(decision);

                // The second part's latencies are all slower than the first's fastest.
                var latency = TimeSpan.FromTicks(random.Next(1, 100_000) + (scale == 3 ? 100_000 : 0));
                whole.RecordRoutingLatency(latency);
                rank.RecordRoutingLatency(latency);
            }
        }

        using var merged = RoutingStats.Merge([rank0, rank1]);

        Assert.NotEqual(rank0.CapacityStats.PeakUtilization, rank1.CapacityStats.PeakUtilization);
        Assert.Equal(whole.CapacityStats.PeakUtilization, merged.CapacityStats.PeakUtilization);
        Assert.Equal(whole.CapacityStats.TotalCapacity, merged.CapacityStats.TotalCapacity);
        Assert.Equal(whole.CapacityStats.OverallUtilization(), merged.CapacityStats.OverallUtilization());
        var weighted = ((700.0 * rank0.CapacityStats.AverageUtilization) + (500.0 * rank1.CapacityStats.AverageUtilization)) / 1200;
        Assert.Equal(weighted, merged.CapacityStats.AverageUtilization, 1e-6);
        Assert.Equal(whole.AverageRouterZLoss, merged.AverageRouterZLoss, 1e-4);
        Assert.Equal(whole.LoadVarianceHistory, merged.LoadVarianceHistory);
        Assert.Equal(whole.RoutingLatencyStats.MinLatencyMs, merged.RoutingLatencyStats.MinLatencyMs);
        Assert.Equal(whole.RoutingLatencyStats.MaxLatencyMs, merged.RoutingLatencyStats.MaxLatencyMs);
        Assert.Equal(whole.RoutingLatencyStats.RecentLatencies, merged.RoutingLatencyStats.RecentLatencies);
        Assert.Equal(whole.RoutingLatencyStats.TotalLatencyMs, merged.RoutingLatencyStats.TotalLatencyMs, 1e-9 * whole.RoutingLatencyStats.TotalLatencyMs);
    }

    /// <summary>The first part that counts experts fixes them: an idle part after it does not, and the refusal names that first part.</summary>
    [Fact]
    public void DifferentExpertCountsDoNotMerge()
    {
        using var a = new RoutingStats();
        using var b = new RoutingStats();
        a.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2], TotalTokens = 3 });
        b.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2, 3], TotalTokens = 6 });
        using var idle = new RoutingStats();
        using var copy = a.Snapshot();
        Assert.StartsWith("Only the same experts merge: parts[1] counts 2 experts, parts[2] 3.", Assert.Throws<ArgumentException>(() => RoutingStats.Merge([idle, a, b])).Message);
        Assert.StartsWith("Only the same experts merge: parts[0] counts 2 experts, parts[3] 3.", Assert.Throws<ArgumentException>(() => RoutingStats.Merge([a, copy, idle, b])).Message);
    }

    /// <summary>
    /// Options that fix the experts or the capacity must agree even where a part is empty or the
    /// capacity's number equals the unset placeholder (100): such merges took the first part's options
    /// and wrote a snapshot that did not read back.
    /// </summary>
    [Theory]
    [InlineData("experts", "Only the same experts merge: parts[0] has Experts = 4, parts[1] 8.")]
    [InlineData("capacity", "Only the same capacity merges: parts[0] has a capacity of 100 per expert, parts[1] no capacity.")]
    public void PartsOfDifferentOptionsDoNotMerge(string differs, string expected)
    {
        using var a = new RoutingStats(differs == "experts" ? new RoutingStatsOptions { Experts = 4 } : new RoutingStatsOptions { Experts = 4, ExpertCapacity = 100 });
        using var b = new RoutingStats(differs == "experts" ? new RoutingStatsOptions { Experts = 8 } : new RoutingStatsOptions { Experts = 4 });
        b.RecordRouting([0, differs == "experts" ? 7 : 3], tokens: 2, topK: 1);

        var error = Assert.Throws<ArgumentException>(() => RoutingStats.Merge([a, b]));

        Assert.Equal("parts", error.ParamName);
        Assert.StartsWith(expected, error.Message);
    }

    /// <summary>
    /// A part that fixes the experts fixes the merge's, whichever place it has, so that a merge beginning with a part of
    /// no fixed experts keeps them, and refuses parts of others when merged on.
    /// </summary>
    [Fact]
    public void APartThatFixesTheExpertsFixesTheMergesInAnyOrder()
    {
        using var open = new RoutingStats();
        using var fixedEight = new RoutingStats(new RoutingStatsOptions { Experts = 8 });
        using var first = RoutingStats.Merge([fixedEight, open]);
        using var last = RoutingStats.Merge([open, fixedEight]);
        Assert.Equal((8, 8), (first.Options.Experts, last.Options.Experts));
        Assert.Equal(JsonSerializer.Serialize(first), JsonSerializer.Serialize(last));

        using var openAgain = new RoutingStats();
        using var between = RoutingStats.Merge([open, fixedEight, openAgain]);
        Assert.Equal(8, between.Options.Experts);

        using var sixteen = new RoutingStats(new RoutingStatsOptions { Experts = 16 });
        Assert.StartsWith("Only the same experts merge: parts[0] has Experts = 8, parts[1] 16.", Assert.Throws<ArgumentException>(() => RoutingStats.Merge([last, sixteen])).Message);
        Assert.StartsWith("Only the same experts merge: parts[0] has Experts = 8, parts[2] 16.", Assert.Throws<ArgumentException>(() => RoutingStats.Merge([fixedEight, open, sixteen])).Message);
    }

    /// <summary>A part whose options fix 4 experts but which recorded a decision of 8 merges by the experts it counts, alone, beside its copy, or beside an idle part of the same options.</summary>
    [Fact]
    public void APartMergesByTheExpertsItCounts()
    {
        using var part = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        part.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1, 1, 1, 1, 1, 1, 1], TotalTokens = 8 });

        using var idle = new RoutingStats(new RoutingStatsOptions { Experts = 4 });

        using var alone = RoutingStats.Merge([part]);
        using var twice = RoutingStats.Merge([part, alone]);
        using var besideIdle = RoutingStats.Merge([idle, part]);

        Assert.Equal(8, alone.ExpertTokenCounts.Count);
        Assert.Equal(Enumerable.Repeat(2UL, 8), twice.ExpertTokenCounts);
        Assert.Equal(Enumerable.Repeat(1UL, 8), besideIdle.ExpertTokenCounts);
    }

    /// <summary>
    /// A merge adds the parts' f64 sums behind the averages, which a snapshot keeps, not each average times its routings:
    /// a third of 1 is not exact in binary, so sums rebuilt from averages would be off in the last bits.
    /// </summary>
    [Fact]
    public void AMergeAddsThePartsExactSumsNotTheirAveragesTimesTheirRoutings()
    {
        using var part = new RoutingStats(new RoutingStatsOptions { Experts = 3 });
        part.RecordRouting([0, 1, 2], tokens: 3, topK: 1, loadBalanceLoss: 0.5f, routerZLoss: 0.25f);
        part.RecordRouting([0, 0, 1], tokens: 3, topK: 1, loadBalanceLoss: 0.25f, routerZLoss: 0.5f);
        part.RecordRouting([2, 2, 2], tokens: 3, topK: 1, loadBalanceLoss: 0.25f, routerZLoss: 0.25f);
        using var copy = part.Snapshot();

        using var merged = RoutingStats.Merge([part, copy]);

        var (lossSum, zLossSum, utilizationSums) = Sums(part);
        Assert.Equal((1.0, 1.0), (lossSum, zLossSum));
        var mergedSums = Sums(merged);
        Assert.Equal((2 * lossSum, 2 * zLossSum), (mergedSums.LossSum, mergedSums.ZLossSum));
        Assert.Equal(utilizationSums.Select(sum => 2 * sum), mergedSums.UtilizationSums);
    }

    /// <summary>
    /// A merge of one routing beside an idle part averages over that routing: its averages are the routing's. Its efficiency
    /// is of the slots dropped (3 of 6 a capacity of 1 drops), not of the tokens.
    /// </summary>
    [Fact]
    public void AMergeOfOneRoutingAveragesOverItAndCountsItsDroppedSlots()
    {
        using var idle = new RoutingStats(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 1 });
        using var part = new RoutingStats(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 1 });
        part.RecordRouting([0, 0, 0, 0, 1, 3], tokens: 3, topK: 2, loadBalanceLoss: 0.5f, routerZLoss: 0.25f);

        using var merged = RoutingStats.Merge([idle, part]);

        Assert.Equal(1UL, merged.TotalRoutings);
        Assert.Equal((0.5f, 0.25f), (merged.AverageLoadBalanceLoss, merged.AverageRouterZLoss));
        Assert.Equal(part.ExpertUtilization, merged.ExpertUtilization);
        Assert.Contains(merged.ExpertUtilization, utilization => utilization > 0);
        Assert.Equal(part.CapacityStats.AverageUtilization, merged.CapacityStats.AverageUtilization);
        Assert.NotEqual(0f, merged.CapacityStats.AverageUtilization);
        Assert.Equal((6UL, 3UL), (merged.RoutedSlots, merged.SlotsDropped));
        Assert.NotEqual(merged.SlotsDropped, merged.TokensDropped);
        Assert.Equal(50f, merged.RoutingEfficiency);
    }

    /// <summary>Parts that never routed merge to zeros: no average is taken over no routings.</summary>
    [Fact]
    public void PartsThatNeverRoutedMergeToZeros()
    {
        using var a = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        using var b = new RoutingStats(new RoutingStatsOptions { Experts = 4 });

        using var merged = RoutingStats.Merge([a, b]);

        Assert.Equal((0UL, 0f, 0f, 0f, 0f), (merged.TotalRoutings, merged.AverageLoadBalanceLoss, merged.AverageRouterZLoss, merged.RoutingEfficiency, merged.CapacityStats.AverageUtilization));
        Assert.All(merged.ExpertUtilization, utilization => Assert.Equal(0f, utilization));
    }

    /// <summary>One object given twice is refused naming both places (it counted its steps twice); an equal copy merges.</summary>
    [Fact]
    public void AnObjectGivenTwiceIsRefusedNamingBothPlaces()
    {
        using var a = new RoutingStats();
        using var b = new RoutingStats();
        var error = Assert.Throws<ArgumentException>(() => RoutingStats.Merge([a, b, a]));
        Assert.Equal("parts", error.ParamName);
        Assert.StartsWith("parts[2] is parts[0] again; one object merged twice would count its steps twice", error.Message);

        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
        model.RecordStep([0, 1, 2, 3], tokens: 1, topK: 2);
        var modelError = Assert.Throws<ArgumentException>(() => ModelRoutingStats.Merge([model, model]));
        Assert.StartsWith("parts[1] is parts[0] again", modelError.Message);
        using var copy = model.Snapshot();
        using var merged = ModelRoutingStats.Merge([model, copy]);
        Assert.Equal(2UL, merged.Summary().Steps);
    }

    /// <summary>
    /// Two handles to one state are one object given twice: a model's layer read twice through <c>Layer</c> (each call a
    /// new handle), one device engine wrapped twice. Each would count the layer's steps twice; two layers merge.
    /// </summary>
    [Theory]
    [InlineData("managed")]
    [InlineData("cpu")]
    public void TwoHandlesToOneStateAreRefusedAsOneObjectGivenTwice(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 3 };
        using var model = engine == "managed" ? new ModelRoutingStats(options) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), options);
        model.RecordStep([0, 1, 2, 3, 3, 2, 1, 0], tokens: 2, topK: 2);
        using var first = model.Layer(0);
        using var again = model.Layer(0);
        using var other = model.Layer(1);

        var error = Assert.Throws<ArgumentException>(() => RoutingStats.Merge([first, other, again]));
        Assert.StartsWith("parts[2] is parts[0] again, through another handle; one object merged twice would count its steps twice", error.Message);
        using var layers = RoutingStats.Merge([first, other]);
        Assert.Equal(2UL, layers.TotalRoutings);

        if (engine != "managed")
        {
            var device = new DeviceRoutingStats(TestAccelerators.Require(engine), new RoutingStatsOptions { Experts = 4 });
            using var owner = RoutingStats.OnDevice(device);
            using var wrapped = RoutingStats.OnDevice(device);
            Assert.StartsWith("parts[1] is parts[0] again, through another handle", Assert.Throws<ArgumentException>(() => RoutingStats.Merge([owner, wrapped])).Message);
        }
    }

    [Fact]
    public void ANullPartIsNamedByItsIndex()
    {
        using var a = new RoutingStats();
        var error = Assert.Throws<ArgumentException>(() => RoutingStats.Merge([a, a, null!]));
        Assert.Equal("parts", error.ParamName);
        Assert.StartsWith("parts[2] is null", error.Message);
        Assert.Equal("parts", Assert.Throws<ArgumentNullException>(() => RoutingStats.Merge(null!)).ParamName);
    }

    [Fact]
    public void NoPartsAreRefusedNamingTheArgument()
    {
        var error = Assert.Throws<ArgumentException>(() => RoutingStats.Merge([]));
        Assert.Equal("parts", error.ParamName);
        Assert.StartsWith("parts is empty; give at least one part to merge.", error.Message);
    }

    /// <summary>
    /// Totals near 2^64 would wrap in a merge (merged tokens below merged dropped, an efficiency of
    /// 6.6e18 %). A merge stops at 2^63 − 1, the most a snapshot file holds, so that every merge can be saved and read back.
    /// </summary>
    [Fact]
    public void AMergeThatWouldPassTheLargestCountIsRefused()
    {
        // Enough batches to hold 2^63 − 1 tokens, 2^31 − 1 a batch.
        const ulong Batches = 1UL << 33;
        using var part = JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: long.MaxValue - 10, tokensDropped: 5, totalRoutings: Batches))!;
        using var other = JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: 100, tokensDropped: 50))!;
        var error = Assert.Throws<ArgumentException>(() => RoutingStats.Merge([part, other]));
        Assert.Equal("parts", error.ParamName);
        Assert.StartsWith(FormattableString.Invariant($"The merged total_tokens exceeds 9,223,372,036,854,775,807 ({long.MaxValue - 10} + 100), the most a snapshot holds"), error.Message);

        using var near = JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: long.MaxValue - 100, tokensDropped: 5, totalRoutings: Batches))!;
        using var merged = RoutingStats.Merge([near, other]);
        Assert.Equal((ulong)long.MaxValue, merged.TotalTokens);
        Assert.Equal(55UL, merged.TokensDropped);
        using var read = JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(merged))!;
        Assert.Equal((ulong)long.MaxValue, read.TotalTokens);
    }

    /// <summary>
    /// A record onto a state near 2^63 − 1 (read from a file of long runs, merged) that would take a count past it is
    /// refused by the count's name, leaving the state as it was, as a merge refuses such a sum: the count was written
    /// past it, and the snapshot refused on reading (past 2^64 it would wrap). A record that reaches it exactly is taken.
    /// </summary>
    [Fact]
    public void ARecordThatWouldTakeACountPastTheLargestIsRefused()
    {
        const ulong most = long.MaxValue;
        using var stats = JsonSerializer.Deserialize<RoutingStats>(Snapshot(totalTokens: most - 5, tokensDropped: 0, totalRoutings: 1UL << 33))!;
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 5 });
        Assert.Equal(most, stats.TotalTokens);
        var full = JsonSerializer.Serialize(stats);
        using (var read = JsonSerializer.Deserialize<RoutingStats>(full)!)
        {
            Assert.Equal(most, read.TotalTokens);
        }

        var error = Assert.Throws<InvalidOperationException>(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 1 }));
        Assert.Equal(FormattableString.Invariant($"This batch would take total_tokens past 9,223,372,036,854,775,807 ({most} + 1), the most a snapshot holds; the statistics are unchanged: record into new statistics."), error.Message);
        Assert.Equal(full, JsonSerializer.Serialize(stats));

        var node = System.Text.Json.Nodes.JsonNode.Parse(Snapshot(totalTokens: 4, tokensDropped: 0, totalRoutings: 2))!;
        node["expert_token_counts"]![1] = most - 1;
        node["capacity_stats"]!["total_used"] = most;
        using var counted = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
        var before = JsonSerializer.Serialize(counted);
        error = Assert.Throws<InvalidOperationException>(() => counted.RecordRouting([1, 1], tokens: 2, topK: 1));
        Assert.StartsWith(FormattableString.Invariant($"This batch would take expert_token_counts[1] past 9,223,372,036,854,775,807 ({most - 1} + 2)"), error.Message);
        Assert.Equal(before, JsonSerializer.Serialize(counted));
        counted.RecordRouting([1, 0], tokens: 2, topK: 1);
        Assert.Equal(most, counted.ExpertTokenCounts[1]);

        // Routed slots (k of them a token) and invalid ids outgrow every expert's count and the tokens: each is checked.
        foreach (var field in new[] { "routed_slots", "invalid_expert_ids" })
        {
            node = System.Text.Json.Nodes.JsonNode.Parse(Snapshot(totalTokens: 1UL << 40, tokensDropped: 0, totalRoutings: 1UL << 33))!;
            node["routed_slots"] = field == "routed_slots" ? most - 4 : 1UL << 40;
            node["invalid_expert_ids"] = field == "invalid_expert_ids" ? most - 4 : 0;
            using var ids = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
            before = JsonSerializer.Serialize(ids);
            int[] batch = field == "routed_slots" ? [0, 1, 0, 1, 0] : [5, 5, 5, 5, 5];
            error = Assert.Throws<InvalidOperationException>(() => ids.RecordRouting(batch, tokens: 1, topK: 5));
            Assert.StartsWith(FormattableString.Invariant($"This batch would take {field} past 9,223,372,036,854,775,807"), error.Message);
            Assert.Equal(before, JsonSerializer.Serialize(ids));
            ids.RecordRouting(batch.AsSpan(0, 4), tokens: 1, topK: 4);
            Assert.Equal(most, field == "routed_slots" ? ids.RoutedSlots : ids.InvalidExpertIds);
        }
    }

    /// <summary>
    /// Two total latencies of 1e308 ms summed to infinity, which the merge kept and wrote as null: its
    /// own snapshot was refused on reading. The sum is refused like a count's.
    /// </summary>
    [Fact]
    public void AMergeWhoseTotalLatencyLeavesTheDoublesIsRefused()
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(Snapshot(totalTokens: 2, tokensDropped: 0))!;
        node["routing_latency_stats"] = System.Text.Json.Nodes.JsonNode.Parse(
            """{"total_measurements":1,"total_latency_ms":1e308,"min_latency_ms":1e308,"max_latency_ms":1e308,"recent_latencies":[1e308]}""");
        using var part = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;
        using var other = JsonSerializer.Deserialize<RoutingStats>(node.ToJsonString())!;

        var error = Assert.Throws<ArgumentException>(() => RoutingStats.Merge([part, other]));
        Assert.Equal("parts", error.ParamName);
        Assert.StartsWith("The merged total_latency_ms exceeds 1.7976931348623157E+308 (1E+308 + 1E+308), the most a snapshot holds", error.Message);
        Assert.Equal(1e308, part.RoutingLatencyStats.TotalLatencyMs);
    }

    [Fact]
    public void ConcurrentRecordsOnTheManagedFacadeKeepEveryLatency()
    {
        using var stats = new RoutingStats();
        var expected = RecordConcurrently(stats.RecordRoutingLatency, () => _ = stats.RoutingLatencyStats.P99Latency());
        AssertExact(expected, stats.RoutingLatencyStats);
    }

    /// <summary>
    /// The most experts there may be (<see cref="RoutingStatsOptions.MaxExperts"/>) record on the
    /// managed engine, exactly, their load variances deferred in a bounded window.
    /// </summary>
    [Fact]
    public void AMillionExpertsRecordOnTheManagedEngine()
    {
        const int last = RoutingStatsOptions.MaxExperts - 1;
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = RoutingStatsOptions.MaxExperts });
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        stats.RecordRouting([0, 1, 2, last], tokens: 2, topK: 2);
        Assert.Equal(2UL, stats.TotalRoutings);
        Assert.Equal(8UL, stats.RoutedSlots);
        Assert.Equal(2UL, stats.ExpertTokenCounts[0]);
        Assert.Equal(1UL, stats.ExpertTokenCounts[last]);
        Assert.Equal(2, stats.LoadVarianceHistory.Count);

        var counts = new int[RoutingStatsOptions.MaxExperts];
        counts[last] = 3;
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = counts, TotalTokens = 3 });
        Assert.Equal(4UL, stats.ExpertTokenCounts[last]);
    }

    /// <summary>
    /// The seed's <c>alpha = 1/n</c> update in f32 stalls: after 40 M batches of counts [5, 3] over 4
    /// tokens it reads 1.0 for 1.25. The means are f64 sums over the batches: exact here.
    /// </summary>
    [Fact]
    public void LongRunMeansDoNotStallOnTheManagedEngine()
    {
        using var stats = new RoutingStats();
        var decision = new RoutingDecision { ExpertCapacities = [5, 3], TotalTokens = 4, LoadBalanceLoss = 2f, RouterZLoss = 0.1f };
        for (var i = 0; i < 40_000_000; i++)
        {
            stats.RecordRouting(decision);
        }

        Assert.Equal([1.25f, 0.75f], stats.ExpertUtilization);
        Assert.Equal(2f, stats.AverageLoadBalanceLoss);
        Assert.Equal(0.1f, stats.AverageRouterZLoss, 1e-6f * 0.1f);
    }

    /// <summary>
    /// The same at 10^9 batches on the managed engine: a state of 999,999,999 batches (its sums as they
    /// would stand) takes one more.
    /// </summary>
    [Fact]
    public void MeansStayExactAfterABillionBatchesOnTheManagedEngine()
    {
        using var stats = RoutingStats.FromState(new RoutingStatsOptions { Experts = 2 }, new RoutingState
        {
            TotalRoutings = BillionLess1,
            TotalTokens = 4 * BillionLess1,
            RoutedSlots = 8 * BillionLess1,
            ExpertUtilization = [1.25f, 0.75f],
            UtilizationSums = [1.25 * BillionLess1, 0.75 * BillionLess1],
            ExpertTokenCounts = [5 * BillionLess1, 3 * BillionLess1],
            LoadBalanceLossSum = 2.0 * BillionLess1,
            RouterZLossSum = 0,
        });
        stats.RecordRouting([0, 0, 0, 0, 0, 1, 1, 1], tokens: 4, topK: 2, loadBalanceLoss: 2f);
        Assert.Equal(BillionLess1 + 1, stats.TotalRoutings);
        Assert.Equal([1.25f, 0.75f], stats.ExpertUtilization);
        Assert.Equal(2f, stats.AverageLoadBalanceLoss);
    }

    private const ulong BillionLess1 = 999_999_999;

    /// <summary>
    /// The managed engine's utilization list, held across records, shows them as its token counts' list
    /// does: the means are divided out lazily, and a list read before a record must not keep the old ones.
    /// </summary>
    [Fact]
    public void AHeldUtilizationListShowsLaterRecords()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 0, 0, 0], tokens: 4, topK: 1);
        var utilization = stats.ExpertUtilization;
        var counts = stats.ExpertTokenCounts;
        stats.RecordRouting([1, 1, 1, 1], tokens: 4, topK: 1);

        Assert.Equal([4UL, 4UL, 0UL, 0UL], counts);
        Assert.Equal([0.5f, 0.5f, 0f, 0f], utilization);
        Assert.Equal(0.5f, utilization[1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => utilization[4]);
    }

    /// <summary>
    /// The utilization list the managed engine keeps between reads belongs to one set of means: after a reset, or a
    /// record that changes the expert count, a read returns the new means, not the list read before.
    /// </summary>
    [Fact]
    public void AUtilizationReadBeforeAResetOrANewExpertCountIsNotReturnedAfterIt()
    {
        using var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [4, 0, 0, 0], TotalTokens = 4 });
        Assert.Equal([1f, 0f, 0f, 0f], stats.ExpertUtilization);

        stats.Reset();
        Assert.Empty(stats.ExpertUtilization);

        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 2 });
        Assert.Equal([0.5f, 0.5f], stats.ExpertUtilization);
        // A new expert count starts new sums, divided by every batch so far, as the seed resizes (resize-5.jsonl).
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [0, 0, 3], TotalTokens = 3 });
        Assert.Equal([0f, 0f, 0.5f], stats.ExpertUtilization);
    }

    /// <summary>
    /// Statistics without <see cref="RoutingStatsOptions.UtilizationDecay"/> keep no decayed utilization, and neither
    /// does their snapshot or a copy read from their JSON: a copy does not gain a list of zeros its original lacks.
    /// </summary>
    [Fact]
    public void ACopyOfStatisticsWithoutADecayHasNoDecayedUtilization()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        using var snapshot = stats.Snapshot();
        using var read = JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(stats))!;

        Assert.Empty(stats.DecayedExpertUtilization);
        Assert.Empty(snapshot.DecayedExpertUtilization);
        Assert.Empty(read.DecayedExpertUtilization);
        Assert.Equal(stats.ExpertUtilization, snapshot.ExpertUtilization);
    }

    /// <summary>
    /// A record of ids without <see cref="RoutingStatsOptions.Experts"/> takes the expert count of the state
    /// it records into: a reset that comes first leaves it no count (it is refused), not the count before it.
    /// </summary>
    [Theory]
    [InlineData("managed")]
    [InlineData("cpu")]
    public void ARecordOfIdsTakesTheExpertCountOfTheStateItRecordsInto(string engine)
    {
        var gate = new Lock();
        using var stats = engine == "managed"
            ? new RoutingStats(new ManagedRoutingEngine(new RoutingStatsOptions(), gate: gate))
            : OnDeviceWithGate(out gate);
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1, 1, 1], TotalTokens = 4 });
        Exception? refused = null;
        var recorder = new Thread(() => refused = Record.Exception(() => stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2)));

        lock (gate)
        {
            recorder.Start();
            // The record waits for the gate, which this thread holds while it resets.
            Assert.True(SpinWait.SpinUntil(() => recorder.ThreadState.HasFlag(ThreadState.WaitSleepJoin), Patience.GoAhead));
            stats.Reset();
        }

        recorder.Join();
        Assert.IsType<InvalidOperationException>(refused);
        Assert.Equal(0UL, stats.TotalRoutings);
        Assert.Empty(stats.ExpertTokenCounts);
    }

    /// <summary>
    /// A record of ids takes the experts the options fix, not the count of a decision of more recorded before it:
    /// an id past the fixed experts is invalid, though the state counted an expert of that id, and the record counts the fixed experts.
    /// </summary>
    [Fact]
    public void ARecordOfIdsTakesTheExpertsTheOptionsFixOverTheStatesCount()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1, 1, 1, 1, 1, 1, 1], TotalTokens = 8 });

        var outcome = Record.Exception(() => stats.RecordRouting([5, 1], tokens: 2, topK: 1));

        Assert.Null(outcome);
        Assert.Equal(1UL, stats.InvalidExpertIds);
        Assert.Equal(4, stats.ExpertTokenCounts.Count);
    }

    /// <summary>A model's layer names its model's engine and accelerator, not "managed" for a device model's.</summary>
    [Theory]
    [InlineData("managed")]
    [InlineData("cpu")]
    public void AModelsLayerReportsTheModelsEngineAndDevice(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 2 };
        using var model = engine == "managed" ? new ModelRoutingStats(options) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), options);
        using var layer = model.Layer(1);

        var expected = engine == "managed" ? "managed" : TestAccelerators.Require(engine).Name;
        Assert.Equal(expected, model.DeviceName);
        Assert.Equal(expected, layer.DeviceName);
        Assert.Equal(engine, model.Backend);
        Assert.Equal(engine, layer.Backend);
    }

    /// <summary>The sums behind the averages, as a snapshot writes them.</summary>
    private static (double LossSum, double ZLossSum, double[] UtilizationSums) Sums(RoutingStats stats)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(JsonSerializer.Serialize(stats))!;
        return (
            node["load_balance_loss_sum"]!.GetValue<double>(),
            node["router_z_loss_sum"]!.GetValue<double>(),
            [.. node["expert_utilization_sums"]!.AsArray().Select(sum => sum!.GetValue<double>())]);
    }

    private static RoutingStats OnDeviceWithGate(out Lock gate)
    {
        var device = new DeviceRoutingStats(TestAccelerators.Require("cpu"), new RoutingStatsOptions());
        gate = device.Gate;
        return new RoutingStats(new DeviceRoutingEngine(device));
    }
}
