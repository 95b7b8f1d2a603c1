using System.Text.Json;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;
using MoeGpuStats.Lab;

namespace MoeGpuStats.Tests.Conformance;

/// <summary>
/// What a record of top-k ids means, on every engine and every counting: padding, slots dropped by a
/// capacity, refused inputs that leave the state as it was, long-run means.
/// </summary>
public sealed class RecordSemanticsTests
{
    /// <summary>The managed engine, each accelerator, and the countings a default accelerator does not pick here.</summary>
    public static TheoryData<string> Engines => ["managed", "cpu", TestAccelerators.CpuWithFourMultiprocessors, "cpu-quad-loads", "cpu-warp-aggregated", "cuda", "opencl"];

    internal static RoutingStats Create(string engine, RoutingStatsOptions options) => engine switch
    {
        "managed" => new RoutingStats(options),
        "cpu-quad-loads" => RoutingStats.OnDevice(new DeviceRoutingStats(
            TestAccelerators.Require("cpu"), options, null, new RecordKernelPolicy { Counting = HistogramCounting.QuadLoadRuns })),
        "cpu-warp-aggregated" => RoutingStats.OnDevice(new DeviceRoutingStats(
            TestAccelerators.Require(TestAccelerators.CpuWithWarpsOf32), options, null, CandidateCounting.WarpAggregated.CreateDefault)),
        _ => RoutingStats.OnDevice(TestAccelerators.Require(engine), options),
    };

    [Theory]
    [MemberData(nameof(Engines))]
    public void ACapacityDropsTokenExpertSlotsNotWholeTokens(string engine)
    {
        // 8 tokens, each routed to all 8 experts; 7 slots per expert: 56 of 64 slots kept.
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 8, ExpertCapacity = 7 });
        stats.RecordRouting(Enumerable.Range(0, 64).Select(i => i % 8).ToArray(), tokens: 8, topK: 8);
        using var snapshot = stats.Snapshot();
        Assert.Equal(64UL, snapshot.RoutedSlots);
        Assert.Equal(8UL, snapshot.SlotsDropped);
        Assert.Equal(0UL, snapshot.TokensDropped);
        Assert.Equal(8UL, snapshot.TotalTokens);
        Assert.Equal(87.5f, snapshot.RoutingEfficiency);
        Assert.Equal(100f, snapshot.CapacityStats.OverallUtilization());
        Assert.Equal(1f, snapshot.CapacityStats.PeakUtilization);
        Assert.Equal(56UL, snapshot.CapacityStats.TotalUsed);
        Assert.Equal(1UL, snapshot.CapacityStats.CapacityExceededCount);
    }

    /// <summary>
    /// A loss mean that rounds to −0 (a sum of −1.4e-45 over three batches) is 0 on every engine and in a merge: it was
    /// −0, which JSON wrote as <c>-0</c> and read back as 0, so a state's text changed on its round trip.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void ALossMeanThatRoundsToNegativeZeroIsZero(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting([0, 1], tokens: 2, topK: 1, loadBalanceLoss: -float.Epsilon, routerZLoss: -float.Epsilon);
        using var part = stats.Snapshot();
        stats.RecordRouting([0, 1], tokens: 2, topK: 1);
        stats.RecordRouting([0, 1], tokens: 2, topK: 1);
        using var other = Create(engine, new RoutingStatsOptions { Experts = 2 });
        other.RecordRouting([0, 1], tokens: 2, topK: 1);
        other.RecordRouting([0, 1], tokens: 2, topK: 1);
        using var merged = RoutingStats.Merge([part, other]);

        foreach (var mean in new[] { stats.AverageLoadBalanceLoss, stats.AverageRouterZLoss, merged.AverageLoadBalanceLoss, merged.AverageRouterZLoss })
        {
            Assert.Equal(0, BitConverter.SingleToInt32Bits(mean));
        }

        var json = JsonSerializer.Serialize(stats);
        using var read = JsonSerializer.Deserialize<RoutingStats>(json)!;
        Assert.Equal(json, JsonSerializer.Serialize(read));
    }

    /// <summary>
    /// <see cref="RoutingStats.CapacityStats"/> is a copy on every engine: its public <c>Update</c> (the seed's) changes
    /// the copy, never the statistics, which would then count capacity without a batch and save a state that does not load.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void CapacityStatsIsACopyThatAnUpdateLeavesTheStatisticsOutOf(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting([0, 1, 0, 0], tokens: 4, topK: 1);
        var capacity = stats.CapacityStats;
        capacity.Update(new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, TokensDropped = 1 });
        Assert.Equal((1UL, 400UL, 8UL), (capacity.CapacityExceededCount, capacity.TotalCapacity, capacity.TotalUsed));
        Assert.Equal((0UL, 200UL, 4UL), (stats.CapacityStats.CapacityExceededCount, stats.CapacityStats.TotalCapacity, stats.CapacityStats.TotalUsed));
        using var read = JsonSerializer.Deserialize<RoutingStats>(JsonSerializer.Serialize(stats))!;
        Assert.Equal((1UL, 200UL), (read.TotalRoutings, read.CapacityStats.TotalCapacity));
    }

    /// <summary>
    /// Padding rows are not tokens, so none is dropped: a record's dropped tokens count up to its real
    /// tokens, and the statistics still read back from their JSON (more dropped than recorded did not).
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void DroppedTokensCountAtMostTheBatchsRealTokens(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting([-1, -1, -1, -1], tokens: 2, topK: 2, tokensDropped: 1);
        stats.RecordRouting([-1, -1, 0, 1], tokens: 2, topK: 2, tokensDropped: 2);
        stats.RecordRouting([0, 1, 1, 0], tokens: 2, topK: 2, tokensDropped: 1);
        using var snapshot = stats.Snapshot();

        Assert.Equal(3UL, snapshot.TotalTokens);
        Assert.Equal(0UL + 1 + 1, snapshot.TokensDropped);
        using var read = System.Text.Json.JsonSerializer.Deserialize<RoutingStats>(System.Text.Json.JsonSerializer.Serialize(snapshot))!;
        Assert.Equal(snapshot.TokensDropped, read.TokensDropped);
    }

    /// <summary>
    /// A record of ids uses the slots it keeps, whether a capacity dropped the others or the caller reported dropped
    /// tokens (k slots each): the capacity figures leave the dropped slots out alike. A decision's counts stay the
    /// seed's used slots, whatever it drops.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void SlotsTheCallerDroppedAreNotUsed(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 8 });
        stats.RecordRouting([0, 1, 2, 3, 4, 5], tokens: 2, topK: 3, tokensDropped: 1);

        var capacity = stats.CapacityStats;
        Assert.Equal((6UL, 3UL), (stats.RoutedSlots, stats.SlotsDropped));
        Assert.Equal((3UL, 800UL), (capacity.TotalUsed, capacity.TotalCapacity));
        Assert.Equal(3f / 800, capacity.PeakUtilization);
        using var capped = Create(engine, new RoutingStatsOptions { Experts = 8, ExpertCapacity = 2 });
        capped.RecordRouting([0, 0, 0, 1, 2, 3], tokens: 6, topK: 1);
        Assert.Equal((6UL, 1UL, 5UL), (capped.RoutedSlots, capped.SlotsDropped, capped.CapacityStats.TotalUsed));

        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [3, 1, 0, 0, 0, 0, 0, 0], TotalTokens = 4, TokensDropped = 1 });
        Assert.Equal(3UL + 4, stats.CapacityStats.TotalUsed);
        using var read = System.Text.Json.JsonSerializer.Deserialize<RoutingStats>(System.Text.Json.JsonSerializer.Serialize(stats))!;
        Assert.Equal(stats.CapacityStats.TotalUsed, read.CapacityStats.TotalUsed);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void AnIdOfMinusOneIsAnEmptySlotAndAllEmptyTokensAreNoTokens(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3, 0, 2, -1, -1], tokens: 4, topK: 2);
        using var snapshot = stats.Snapshot();
        Assert.Equal(3UL, snapshot.TotalTokens);
        Assert.Equal([2UL, 1UL, 2UL, 1UL], snapshot.ExpertTokenCounts);
        Assert.Equal([2f / 3, 1f / 3, 2f / 3, 1f / 3], snapshot.ExpertUtilization);
        Assert.Equal(0UL, snapshot.InvalidExpertIds);
        Assert.Equal(6UL, snapshot.RoutedSlots);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void OtherIdsOutsideTheExpertsStayInvalidBesidePadding(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 4 });
        // Token 1 has one empty slot and one invalid id: a token. Token 3 is padding.
        stats.RecordRouting([0, -1, -1, 4, -2, int.MinValue, -1, -1, 3, int.MaxValue], tokens: 5, topK: 2);
        using var snapshot = stats.Snapshot();
        Assert.Equal(4UL, snapshot.TotalTokens);
        Assert.Equal(4UL, snapshot.InvalidExpertIds);
        Assert.Equal([1UL, 0UL, 0UL, 1UL], snapshot.ExpertTokenCounts);
        Assert.Equal(2UL, snapshot.RoutedSlots);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void ABatchOfOnlyPaddingAddsNoTokensAndKeepsTheEfficiency(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 2 });
        stats.RecordRouting([0, 1], tokens: 1, topK: 2);
        stats.RecordRouting([-1, -1, -1, -1], tokens: 2, topK: 2);
        using var snapshot = stats.Snapshot();
        Assert.Equal(2UL, snapshot.TotalRoutings);
        Assert.Equal(1UL, snapshot.TotalTokens);
        Assert.Equal(100f, snapshot.RoutingEfficiency);
        Assert.Equal([0.5f, 0.5f], snapshot.ExpertUtilization);
    }

    /// <summary>
    /// The decayed utilization is kept in f64 on every engine: after 50 batches decayed by 1 − 2^-16 it is
    /// <c>share × (1 − d^n)</c> to 1e-12, where an f32 average is 9e-8 to 4e-7 off (the
    /// managed engine's f64 values to the bit, and the shown f32 values are those rounded).
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void DecayedUtilizationIsKeptInF64(string engine)
    {
        const float decay = 1f - (1f / 65_536);
        const int batches = 50;
        var options = new RoutingStatsOptions { Experts = 3, UtilizationDecay = decay };
        using var stats = Create(engine, options);
        using var managed = new RoutingStats(options);
        int[] ids = [0, 1, 1, 2, 2, 2];
        for (var i = 0; i < batches; i++)
        {
            stats.RecordRouting(ids, tokens: 6, topK: 1);
            managed.RecordRouting(ids, tokens: 6, topK: 1);
        }

        var kept = stats.ExportState().DecayedExpertUtilization;
        var approach = 1 - Math.Pow(decay, batches);
        double[] shares = [1f / 6, 2f / 6, 3f / 6];
        for (var e = 0; e < shares.Length; e++)
        {
            Assert.Equal(shares[e] * approach, kept[e], 1e-12 * shares[e]);
        }

        Assert.Equal(managed.ExportState().DecayedExpertUtilization, kept);
        Assert.Equal(Array.ConvertAll(kept, value => (float)value), stats.DecayedExpertUtilization);
    }

    /// <summary>
    /// Padding wherever a counting might lose it: whole padded tokens and stray empty slots at every
    /// offset, before and after a quad boundary, in batches that split over many groups.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void PaddedBatchesEqualTheManagedEngineToTheBit(string engine)
    {
        var options = new RoutingStatsOptions { Experts = 37, ExpertCapacity = 40, UtilizationDecay = 0.75f };
        using var stats = Create(engine, options);
        using var managed = new RoutingStats(options);
        var random = new Random(18);
        foreach (var (tokens, topK) in new[] { (1, 1), (3, 2), (5, 3), (257, 8), (1000, 1), (4099, 6), (20_001, 4) })
        {
            var ids = new int[tokens * topK];
            for (var t = 0; t < tokens; t++)
            {
                var kind = random.Next(10);
                for (var s = 0; s < topK; s++)
                {
                    ids[t * topK + s] = kind switch
                    {
                        0 => -1,
                        1 when s == topK - 1 => -1,
                        2 when s == 0 => random.Next(-3, 0),
                        3 => 37 + random.Next(3),
                        _ => random.Next(37),
                    };
                }
            }

            stats.RecordRouting(ids, tokens, topK, loadBalanceLoss: 0.125f * topK);
            managed.RecordRouting(ids, tokens, topK, loadBalanceLoss: 0.125f * topK);
        }

        using var snapshot = stats.Snapshot();
        Assert.Equal(managed.TotalTokens, snapshot.TotalTokens);
        Assert.Equal(managed.InvalidExpertIds, snapshot.InvalidExpertIds);
        Assert.Equal(managed.RoutedSlots, snapshot.RoutedSlots);
        Assert.Equal(managed.SlotsDropped, snapshot.SlotsDropped);
        Assert.Equal(managed.ExpertTokenCounts, snapshot.ExpertTokenCounts);
        Assert.Equal(managed.ExpertUtilization, snapshot.ExpertUtilization);
        Assert.Equal(managed.DecayedExpertUtilization, snapshot.DecayedExpertUtilization);
        Assert.Equal(managed.LoadVarianceHistory, snapshot.LoadVarianceHistory);
        Assert.Equal(managed.AverageLoadBalanceLoss, snapshot.AverageLoadBalanceLoss);
        Assert.Equal(managed.RoutingEfficiency, snapshot.RoutingEfficiency);
        Assert.Equal(managed.CapacityStats.TotalUsed, snapshot.CapacityStats.TotalUsed);
        Assert.Equal(managed.CapacityStats.AverageUtilization, snapshot.CapacityStats.AverageUtilization);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void AnExplicitDroppedCountBesideACapacityIsRefusedAndChangesNothing(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 4, ExpertCapacity = 2 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);
        var error = Assert.Throws<ArgumentException>(() => stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1, tokensDropped: 2));
        Assert.Equal("tokensDropped", error.ParamName);
        Assert.Contains("ExpertCapacity", error.Message);
        AssertOneRecordOfFour(stats);
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void EachRefusedRecordNamesItsArgumentAndChangesNothing(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);
        int[] ids = [0, 1, 2, 3];
        foreach (var loss in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
        {
            Assert.Equal("loadBalanceLoss", Assert.Throws<ArgumentException>(() => stats.RecordRouting(ids, 4, 1, loadBalanceLoss: loss)).ParamName);
            Assert.Equal("routerZLoss", Assert.Throws<ArgumentException>(() => stats.RecordRouting(ids, 4, 1, routerZLoss: loss)).ParamName);
        }

        Assert.Equal("tokensDropped", Assert.Throws<ArgumentException>(() => stats.RecordRouting(ids, 4, 1, tokensDropped: 5)).ParamName);
        Assert.Equal("tokensDropped", Assert.Throws<ArgumentException>(() => stats.RecordRouting(ids, 4, 1, tokensDropped: -1)).ParamName);
        Assert.Equal("topK", Assert.Throws<ArgumentOutOfRangeException>(() => stats.RecordRouting(ids, 4, 0)).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentOutOfRangeException>(() => stats.RecordRouting(ids, -1, 1)).ParamName);
        Assert.Equal("topKExpertIds", Assert.Throws<ArgumentException>(() => stats.RecordRouting(ids, 5, 1)).ParamName);
        AssertOneRecordOfFour(stats);
    }

    /// <summary>
    /// A batch's counts are 32-bit per device group, so one record takes at most 2^31 − 1 ids: one more is refused by
    /// its size, exactly that many only for want of ids.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void ARecordOfMoreThanTwoToTheThirtyOneIdsIsRefused(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);
        var error = Assert.Throws<ArgumentException>(() => stats.RecordRouting([0, 1, 2, 3], tokens: 1 << 29, topK: 4));
        Assert.Contains("= 2,147,483,648 ids; one record takes at most 2,147,483,647", error.Message);
        Assert.Equal("tokens", error.ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => stats.RecordRouting([0, 1], tokens: int.MaxValue, topK: 2)).ParamName);
        Assert.Equal("topKExpertIds", Assert.Throws<ArgumentException>(() => stats.RecordRouting([0, 1], tokens: int.MaxValue, topK: 1)).ParamName);
        AssertOneRecordOfFour(stats);
    }

    /// <summary>A decision's counts in a list of the caller's own type that turn negative after the checks are refused when the engine reads them, and change nothing.</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void ACountThatTurnsNegativeAfterTheChecksIsRefused(string engine)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);

        var error = Assert.Throws<ArgumentException>(
            () => stats.RecordRouting(new RoutingDecision { ExpertCapacities = new NegativeWhenReadAgain([3, 0, 1, 2]), TotalTokens = 6 }));

        Assert.Equal("routingDecision", error.ParamName);
        Assert.StartsWith("ExpertCapacities[0] read -1 after the checks", error.Message);
        AssertOneRecordOfFour(stats);
    }

    /// <summary>
    /// A decision's list that holds another number of experts when the engine reads it than when it was checked (a
    /// list another thread clears or fills) is refused before it is read, with no allocation from the new count,
    /// and changes nothing.
    /// </summary>
    [Theory]
    [MemberData(nameof(CountChanges))]
    public void AListWhoseExpertsChangeAfterTheChecksIsRefused(string engine, int later)
    {
        using var stats = Create(engine, new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);

        var error = Assert.Throws<ArgumentException>(
            () => stats.RecordRouting(new RoutingDecision { ExpertCapacities = new CountChangesAfterFirstRead([3, 0, 1, 2], later), TotalTokens = 6 }));

        Assert.Equal("routingDecision", error.ParamName);
        Assert.StartsWith(FormattableString.Invariant($"ExpertCapacities held 4 experts when checked and {later:N0} when read"), error.Message);
        AssertOneRecordOfFour(stats);
    }

    /// <summary>The seed's public <c>CapacityStats.update</c> reads a decision as a record does: once, its experts as checked.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(int.MaxValue)]
    public void ACapacityUpdateFromAListWhoseExpertsChangeIsRefused(int later)
    {
        var capacity = new CapacityStats(slotsPerExpert: 2);
        capacity.Update(new RoutingDecision { ExpertCapacities = [1, 2, 0, 1], TotalTokens = 4 });

        var error = Assert.Throws<ArgumentException>(
            () => capacity.Update(new RoutingDecision { ExpertCapacities = new CountChangesAfterFirstRead([3, 0, 1, 2], later), TotalTokens = 6 }));

        Assert.Equal("routingDecision", error.ParamName);
        Assert.Equal((4UL, 8UL, 0.5f), (capacity.TotalUsed, capacity.TotalCapacity, capacity.PeakUtilization));
    }

    public static TheoryData<string, int> CountChanges()
    {
        var data = new TheoryData<string, int>();
        foreach (var engine in new[] { "managed", "cpu", "cuda", "opencl" })
        {
            foreach (var later in new[] { 0, 3, 5, 2_000_000, int.MaxValue })
            {
                data.Add(engine, later);
            }
        }

        return data;
    }

    /// <summary>Four counts whose <see cref="Count"/> says <paramref name="later"/> after its first read.</summary>
    private sealed class CountChangesAfterFirstRead(int[] counts, int later) : IReadOnlyList<int>
    {
        private bool _countRead;

        public int Count
        {
            get
            {
                var count = _countRead ? later : counts.Length;
                _countRead = true;
                return count;
            }
        }

        public int this[int index] => index < counts.Length ? counts[index] : 1;

        public IEnumerator<int> GetEnumerator() => ((IEnumerable<int>)counts).GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>Counts that read as −1 once each has been read.</summary>
    private sealed class NegativeWhenReadAgain(int[] counts) : IReadOnlyList<int>
    {
        private readonly bool[] _read = new bool[counts.Length];

        public int Count => counts.Length;

        public int this[int index]
        {
            get
            {
                var again = _read[index];
                _read[index] = true;
                return again ? -1 : counts[index];
            }
        }

        public IEnumerator<int> GetEnumerator()
        {
            for (var i = 0; i < Count; i++)
            {
                yield return this[i];
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    private static void AssertOneRecordOfFour(RoutingStats stats)
    {
        using var snapshot = stats.Snapshot();
        Assert.Equal(1UL, snapshot.TotalRoutings);
        Assert.Equal(4UL, snapshot.TotalTokens);
        Assert.Equal([1UL, 1UL, 1UL, 1UL], snapshot.ExpertTokenCounts);
        Assert.Single(snapshot.LoadVarianceHistory);
        Assert.Equal(0UL, snapshot.InvalidExpertIds);
    }
}
