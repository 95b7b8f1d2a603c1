using System.Text.Json;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Tests.Telemetry;

/// <summary>The recent series (<c>recentSteps</c>) against the summary cut to the newest steps and an independent count of the ids recorded.</summary>
public sealed partial class ModelRoutingStatsMetricsTests
{
    private const int RecentWindow = 4;

    public static TheoryData<string, int> EnginesAndRecentSteps => new()
    {
        { "managed", 1 }, { "managed", 3 }, { "managed", RecentWindow },
        { "cpu", 1 }, { "cpu", 3 }, { "cpu", RecentWindow },
    };

    /// <summary>
    /// After every step (fewer than N recorded, N, a window that wraps twice, zero-token steps, steps of
    /// invalid ids only), then after a reset and more steps, every recent series is the summary cut to N
    /// and the balance of an independent count of the newest N steps' ids.
    /// </summary>
    [Theory]
    [MemberData(nameof(EnginesAndRecentSteps))]
    public void TheRecentSeriesFollowTheNewestStepsThroughWrapsEmptyStepsAndResets(string engine, int recentSteps)
    {
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = RecentWindow };
        using var stats = engine == "managed" ? new ModelRoutingStats(options) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), options);
        using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: 0, refreshInterval: TimeSpan.Zero, recentSteps: recentSteps);
        var random = new Random(recentSteps);
        var recorded = new List<int[]>();

        // Nothing recorded: no step covered, every layer's empty load balanced.
        AssertRecent(stats, metrics, recentSteps, recorded, "before any step");
        for (var step = 0; step < (3 * RecentWindow) - 1; step++)
        {
            var tokens = step is 5 or 6 ? 0 : 1 + random.Next(9);
            var ids = new int[Layers * tokens * 2];
            for (var i = 0; i < ids.Length; i++)
            {
                var layer = i / (tokens * 2);
                // Step 9 holds only invalid ids and padding; the others skew each layer differently.
                ids[i] = step == 9 ? (i % 2 == 0 ? -1 : Experts + 1) : random.Next(10) == 0 ? -1 : (int)(random.NextDouble() * random.NextDouble() * (Experts - layer)) % Experts;
            }

            stats.RecordStep(ids, tokens, topK: 2);
            recorded.Add(ids);
            AssertRecent(stats, metrics, recentSteps, recorded, $"after step {step}");
        }

        stats.Reset();
        recorded.Clear();
        AssertRecent(stats, metrics, recentSteps, recorded, "after the reset");
        stats.RecordStep(Step(hot: 2), tokens: 4, topK: 1);
        recorded.Add(Step(hot: 2));
        AssertRecent(stats, metrics, recentSteps, recorded, "after a reset and a step");
        Assert.Equal(ModelRoutingStatsMetrics.SeriesCount(Layers, Experts, topExperts: 0, expertSeries: false, recentSeries: true), Collect(metrics).Count);
    }

    /// <summary>
    /// A model read from JSON publishes the recent series exactly when its window holds at most N steps
    /// (then they are the whole window's), the other series always; after its reset it records, and
    /// publishes them over the newest steps.
    /// </summary>
    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    [InlineData(RecentWindow, true)]
    public void AModelReadFromJsonPublishesTheRecentSeriesWhileItsWindowHoldsAtMostTheStepsAsked(int recentSteps, bool published)
    {
        using var live = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = RecentWindow });
        var recorded = new List<int[]>();
        foreach (var hot in (int[])[1, 4, 5])
        {
            live.RecordStep(Step(hot), tokens: 4, topK: 1);
            recorded.Add(Step(hot));
        }

        using var restored = JsonSerializer.Deserialize<ModelRoutingStats>(JsonSerializer.Serialize(live))!;
        using var metrics = new ModelRoutingStatsMetrics(restored, topExperts: 0, refreshInterval: TimeSpan.Zero, recentSteps: recentSteps);

        var seen = Collect(metrics);

        Assert.Equal(ModelRoutingStatsMetrics.SeriesCount(Layers, Experts, topExperts: 0, expertSeries: false, recentSeries: published), seen.Count);
        Assert.Equal(restored.Summary().Window.MeanBalancedness, Single(seen, "moegs.model.balancedness.mean"));
        if (published)
        {
            AssertRecent(restored, metrics, recentSteps, recorded, "restored");
        }
        else
        {
            Assert.DoesNotContain(seen, m => m.Name.Contains(".recent.", StringComparison.Ordinal));
        }

        restored.Reset();
        recorded.Clear();
        AssertRecent(restored, metrics, recentSteps, recorded, "restored, then reset");
        foreach (var hot in (int[])[3, 3, 0, 2, 5])
        {
            restored.RecordStep(Step(hot), tokens: 4, topK: 1);
            recorded.Add(Step(hot));
            AssertRecent(restored, metrics, recentSteps, recorded, $"restored, reset, then {recorded.Count} steps");
        }
    }

    /// <summary>A snapshot and a merge of live models keep the ring: they publish the recent series, the merge's over the parts' newest steps summed; a merge with a model read from JSON does not while its window holds more.</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void SnapshotsAndMergesOfLiveModelsPublishTheRecentSeries(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = RecentWindow };
        using var a = engine == "managed" ? new ModelRoutingStats(options) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), options);
        using var b = new ModelRoutingStats(options);
        var recorded = new List<int[]>();
        foreach (var hot in (int[])[1, 4, 5, 2, 3])
        {
            a.RecordStep(Step(hot), tokens: 4, topK: 1);
            b.RecordStep(Step(hot), tokens: 4, topK: 1);
            recorded.Add(Step(hot));
        }

        using var snapshot = a.Snapshot();
        using (var metrics = new ModelRoutingStatsMetrics(snapshot, topExperts: 0, refreshInterval: TimeSpan.Zero, recentSteps: 2))
        {
            AssertRecent(snapshot, metrics, 2, recorded, "snapshot");
        }

        // The same steps in both parts: the same balance, each load doubled.
        using var merged = ModelRoutingStats.Merge([a, b]);
        using (var metrics = new ModelRoutingStatsMetrics(merged, topExperts: 0, refreshInterval: TimeSpan.Zero, recentSteps: 2))
        {
            AssertRecent(merged, metrics, 2, recorded, "merge");
        }

        using var restored = JsonSerializer.Deserialize<ModelRoutingStats>(JsonSerializer.Serialize(b))!;
        using var ringless = ModelRoutingStats.Merge([a, restored]);
        using (var metrics = new ModelRoutingStatsMetrics(ringless, topExperts: 0, refreshInterval: TimeSpan.Zero, recentSteps: 2))
        {
            Assert.DoesNotContain(Collect(metrics), m => m.Name.Contains(".recent.", StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(-1)]
    [InlineData(int.MinValue)]
    [InlineData(int.MaxValue)]
    public void RecentStepsOutsideTheWindowAreRefusedNamingThem(int recentSteps)
    {
        using var stats = Model("managed", window: 2);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStatsMetrics(stats, recentSteps: recentSteps));
        Assert.Equal("recentSteps", error.ParamName);
        Assert.StartsWith(FormattableString.Invariant($"recentSteps is {recentSteps}; give 1 to 2, the model's window"), error.Message);
    }

    /// <summary>The recent series equal <c>Summary(N)</c> and the balance of the newest N of <paramref name="recorded"/> (ids of <c>[Layers, tokens, k]</c>), counted here.</summary>
    private static void AssertRecent(ModelRoutingStats stats, ModelRoutingStatsMetrics metrics, int recentSteps, List<int[]> recorded, string when)
    {
        var seen = Collect(metrics);
        var summary = stats.Summary(recentSteps);
        var newest = recorded.Skip(Math.Max(0, recorded.Count - Math.Min(recentSteps, RecentWindow))).ToList();
        var balancedness = new double[Layers];
        double means = 0, maxima = 0;
        for (var l = 0; l < Layers; l++)
        {
            var load = new long[Experts];
            foreach (var ids in newest)
            {
                var perLayer = ids.Length / Layers;
                foreach (var id in ids.AsSpan(l * perLayer, perLayer))
                {
                    if (id >= 0 && id < Experts)
                    {
                        load[id]++;
                    }
                }
            }

            var mean = load.Sum() / (double)Experts;
            var max = load.Max();
            balancedness[l] = max == 0 ? 1.0 : mean / max;
            means += mean;
            maxima += max;
            Assert.True(Math.Abs(summary.Window.Layers[l].Balancedness - PerLayer(seen, "moegs.layer.recent.balancedness", l)) == 0, $"{when}: layer {l}'s recent balancedness is not Summary({recentSteps})'s");
            Assert.True(Math.Abs(balancedness[l] - PerLayer(seen, "moegs.layer.recent.balancedness", l)) < 1e-12, $"{when}: layer {l}'s recent balancedness {PerLayer(seen, "moegs.layer.recent.balancedness", l)}, counted {balancedness[l]}");
        }

        Assert.Equal(newest.Count, Single(seen, "moegs.model.recent.steps"));
        Assert.Equal(summary.WindowSteps, Single(seen, "moegs.model.recent.steps"));
        Assert.Equal(summary.Window.MinBalancedness, Single(seen, "moegs.model.recent.balancedness.min"));
        Assert.Equal(summary.Window.MeanBalancedness, Single(seen, "moegs.model.recent.balancedness.mean"));
        Assert.Equal(summary.Window.TokenWeightedBalancedness, Single(seen, "moegs.model.recent.balancedness.token_weighted"));
        Assert.Equal(balancedness.Min(), Single(seen, "moegs.model.recent.balancedness.min"), 12);
        Assert.Equal(balancedness.Average(), Single(seen, "moegs.model.recent.balancedness.mean"), 12);
        Assert.Equal(maxima == 0 ? 1.0 : means / maxima, Single(seen, "moegs.model.recent.balancedness.token_weighted"), 12);
    }
}
