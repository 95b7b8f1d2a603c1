using System.Diagnostics.Metrics;
using System.Globalization;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Tests.Telemetry;

// Publishers without a meter factory share one meter per process: the classes that create them run one at a time.
[Collection(nameof(SharedMeterCollection))]
public sealed partial class ModelRoutingStatsMetricsTests
{
    private const int Layers = 3;
    private const int Experts = 6;

    public static TheoryData<string> Engines => ["managed", "cpu"];

    /// <summary>Per-layer and model-wide figures are the summary's; the top-K are the window load's ranking (hottest ties to the higher id, coldest to the lower).</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void EveryFigureIsTheSummarysAndTheTopExpertsAreTheWindowsRanking(string engine)
    {
        using var stats = Model(engine, window: 2);
        using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: 3);
        RecordSteps(stats);

        var seen = Collect(metrics);

        Assert.Equal(1, metrics.ReadingsTaken);
        var summary = stats.Summary();
        var load = stats.WindowLoad();
        Assert.Equal((double)summary.Steps, Single(seen, "moegs.model.steps"));
        Assert.Equal(summary.Window.MinBalancedness, Single(seen, "moegs.model.balancedness.min"));
        Assert.Equal(summary.Window.P10Balancedness, Single(seen, "moegs.model.balancedness.p10"));
        Assert.Equal(summary.Window.MedianBalancedness, Single(seen, "moegs.model.balancedness.median"));
        Assert.Equal(summary.Window.MeanBalancedness, Single(seen, "moegs.model.balancedness.mean"));
        Assert.Equal(summary.Window.TokenWeightedBalancedness, Single(seen, "moegs.model.balancedness.token_weighted"));
        Assert.Equal(summary.Window.MaxBalancedness, Single(seen, "moegs.model.balancedness.max"));
        Assert.Equal(summary.Window.WorstLayer, Single(seen, "moegs.model.worst_layer"));
        Assert.Equal(summary.Window.BestLayer, Single(seen, "moegs.model.best_layer"));
        Assert.Equal(summary.WindowSteps, Single(seen, "moegs.model.window.steps"));
        Assert.Equal(load.Select(l => (double)l).Sum() / load.Length, Single(seen, "moegs.model.window.mean_expert_load"), 12);
        for (var l = 0; l < Layers; l++)
        {
            var window = summary.Window.Layers[l];
            Assert.Equal(window.Balancedness, PerLayer(seen, "moegs.layer.balancedness", l));
            Assert.Equal(window.MaxMeanRatio, PerLayer(seen, "moegs.layer.max_mean_ratio", l));
            Assert.Equal(window.CoefficientOfVariation, PerLayer(seen, "moegs.layer.cv", l));
            Assert.Equal(window.DeadExperts, PerLayer(seen, "moegs.layer.dead_experts", l));
            Assert.Equal(window.GiniCoefficient, PerLayer(seen, "moegs.layer.gini", l));
            Assert.Equal(window.Top10PercentShare, PerLayer(seen, "moegs.layer.top10_share", l));
            Assert.Equal(summary.SinceStart.Layers[l].Load, (ulong)PerLayer(seen, "moegs.layer.slots", l));
            using var layer = stats.Layer(l);
            Assert.Equal(layer.TokensDropped, (ulong)PerLayer(seen, "moegs.layer.tokens.dropped", l));
            Assert.Equal(layer.SlotsDropped, (ulong)PerLayer(seen, "moegs.layer.slots.dropped", l));
            Assert.Equal(layer.InvalidExpertIds, (ulong)PerLayer(seen, "moegs.layer.expert_ids.invalid", l));
            Assert.Equal(double.Parse(layer.AverageLoadBalanceLoss.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture), PerLayer(seen, "moegs.layer.loss.load_balance", l));
            Assert.Equal(double.Parse(layer.AverageRouterZLoss.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture), PerLayer(seen, "moegs.layer.loss.router_z", l));
            Assert.NotEqual((double)layer.AverageRouterZLoss, PerLayer(seen, "moegs.layer.loss.router_z", l));
            Assert.True(layer.SlotsDropped > 0 && layer.InvalidExpertIds > 0 && layer.AverageRouterZLoss > 0, "the steps drop slots, hold invalid ids and carry losses");

            var row = load.AsSpan(l * Experts, Experts).ToArray();
            var hottest = Enumerable.Range(0, Experts).OrderByDescending(e => row[e]).ThenByDescending(e => e).Take(3).ToArray();
            var coldest = Enumerable.Range(0, Experts).OrderBy(e => row[e]).ThenBy(e => e).Take(3).ToArray();
            Assert.Equal(hottest, Ranked(seen, "moegs.layer.hot_expert", l).Select(v => (int)v));
            Assert.Equal(coldest, Ranked(seen, "moegs.layer.cold_expert", l).Select(v => (int)v));
            Assert.Equal(hottest.Select(e => (double)row[e]), Ranked(seen, "moegs.layer.hot_expert.load", l));
            Assert.Equal(coldest.Select(e => (double)row[e]), Ranked(seen, "moegs.layer.cold_expert.load", l));
        }

        // Bounded: 11 model series, 12 per layer, 4 per layer and position; no per-expert series.
        Assert.Equal(11 + (12 * Layers) + (4 * Layers * 3), seen.Count);
        Assert.Equal(ModelRoutingStatsMetrics.SeriesCount(Layers, Experts, topExperts: 3, expertSeries: false), seen.Count);
        Assert.DoesNotContain(seen, m => m.Tags.ContainsKey("expert"));
    }

    /// <summary>
    /// With an EP size, two more series: the window's token-weighted and smallest balancedness over ranks
    /// holding the experts in order, the model's summary over that placement; an EP size that does not
    /// divide the experts is refused.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void EpSeriesAreTheSummaryOverRanksOfExpertsInOrder(string engine)
    {
        const int Ranks = 2;
        using var stats = Model(engine, window: 2);
        using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: 0, epSize: Ranks);
        RecordSteps(stats);

        var seen = Collect(metrics);

        var byRank = stats.Summary([.. Enumerable.Range(0, Experts).Select(e => e / (Experts / Ranks))]).Window;
        Assert.Equal(byRank.TokenWeightedBalancedness, Single(seen, "moegs.model.ep.balancedness.token_weighted"), 12);
        Assert.Equal(byRank.MinBalancedness, Single(seen, "moegs.model.ep.balancedness.min"), 12);
        Assert.Equal(ModelRoutingStatsMetrics.SeriesCount(Layers, Experts, 0, expertSeries: false, epSeries: true), seen.Count);
        Assert.Equal(2 + ModelRoutingStatsMetrics.SeriesCount(Layers, Experts, 0, expertSeries: false), seen.Count);
        var refused = Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStatsMetrics(stats, epSize: 4));
        Assert.Equal("epSize", refused.ParamName);

        // One expert a rank is the most ranks there may be.
        metrics.Dispose();
        using var onePerRank = new ModelRoutingStatsMetrics(stats, topExperts: 0, epSize: Experts);
        Assert.Equal(seen.Count, Collect(onePerRank).Count);
    }

    /// <summary>With per-expert series on, one per (layer, expert): the layers' counts since the start and the window load.</summary>
    [Fact]
    public void PerExpertSeriesAreTheCountsAndTheWindowLoad()
    {
        using var stats = Model("managed", window: 2);
        using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: 0, expertSeries: true);
        RecordSteps(stats);

        var seen = Collect(metrics);

        var load = stats.WindowLoad();
        for (var l = 0; l < Layers; l++)
        {
            using var layer = stats.Layer(l);
            for (var e = 0; e < Experts; e++)
            {
                Assert.Equal(layer.ExpertTokenCounts[e], (ulong)PerExpert(seen, "moegs.expert.tokens", l, e));
                Assert.Equal(load[(l * Experts) + e], (ulong)PerExpert(seen, "moegs.expert.window_load", l, e));
            }
        }

        Assert.DoesNotContain(seen, m => m.Name.Contains("hot_expert", StringComparison.Ordinal));
        Assert.Equal(11 + (12 * Layers) + (2 * Layers * Experts), seen.Count);
        Assert.Equal(ModelRoutingStatsMetrics.SeriesCount(Layers, Experts, topExperts: 0, expertSeries: true), seen.Count);
    }

    /// <summary>The window moves on: a reading after more steps shows the new ranking, once the last reading is old enough.</summary>
    [Fact]
    public void AReadingIsReusedUntilItIsOlderThanTheRefreshInterval()
    {
        using var stats = Model("managed", window: 1);
        // Two publishers of one model on one meter would report the same series twice: each on a meter of its own.
        using var cachedMeters = new TestMeterFactory();
        using var cached = new ModelRoutingStatsMetrics(stats, refreshInterval: TimeSpan.FromHours(1), meterFactory: cachedMeters);
        using var fresh = new ModelRoutingStatsMetrics(stats, refreshInterval: TimeSpan.Zero);
        stats.RecordStep(Step(hot: 1), tokens: 4, topK: 1);
        Assert.Equal(1, Ranked(Collect(cached), "moegs.layer.hot_expert", 0)[0]);

        stats.RecordStep(Step(hot: 4), tokens: 4, topK: 1);

        Assert.Equal(1, Ranked(Collect(cached), "moegs.layer.hot_expert", 0)[0]);
        Assert.Equal(4, Ranked(Collect(fresh), "moegs.layer.hot_expert", 0)[0]);
        Assert.Equal(1, cached.ReadingsTaken);

        // However short the interval, a collection's instruments all report one reading.
        Collect(fresh);
        Assert.Equal(2, fresh.ReadingsTaken);
    }

    /// <summary>
    /// A listener that takes over a second over one instrument's measurements (as a large model's
    /// per-expert series take) has not paused between instruments: the rest of its collection reports the
    /// same reading, not one taken after the steps recorded meanwhile.
    /// </summary>
    [Fact]
    public void AListenerSlowOverOneInstrumentsMeasurementsKeepsItsReading()
    {
        using var stats = Model("managed", window: 2);
        using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: 0, expertSeries: true, refreshInterval: TimeSpan.Zero);
        RecordSteps(stats);
        var seen = new List<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => seen.Add((instrument.Name, value, tags.ToArray().ToDictionary(t => t.Key, t => t.Value))));
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            seen.Add((instrument.Name, value, tags.ToArray().ToDictionary(t => t.Key, t => t.Value)));
            if (instrument.Name == "moegs.layer.slots")
            {
                // Steps go on while the listener works through this instrument's measurements.
                stats.RecordStep(Step(hot: 1), tokens: 4, topK: 1);
                Thread.Sleep((CollectionReading<object>.CollectionGap / Layers) + TimeSpan.FromMilliseconds(50));
            }
        });
        listener.Start();

        listener.RecordObservableInstruments();

        Assert.Equal(1, metrics.ReadingsTaken);
        for (var l = 0; l < Layers; l++)
        {
            var layer = l;
            Assert.Equal(PerLayer(seen, "moegs.layer.slots", layer), Enumerable.Range(0, Experts).Sum(e => PerExpert(seen, "moegs.expert.tokens", layer, e)));
        }
    }

    /// <summary>Ties at the top: position 1 is the summary's hottest (the last of the largest) and coldest (the first of the smallest).</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void TiedExpertsRankAsTheSummarysHottestAndColdest(string engine)
    {
        using var stats = Model(engine, window: 2);
        using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: 3);

        // Every layer: experts 1, 2 and 4 two slots each, 0 one, 3 and 5 none.
        stats.RecordStep([.. Enumerable.Range(0, Layers).SelectMany(_ => new[] { 1, 2, 4, 4, 2, 1, 0 })], tokens: 7, topK: 1);

        var seen = Collect(metrics);
        var summary = stats.Summary();
        for (var l = 0; l < Layers; l++)
        {
            Assert.Equal([4, 2, 1], Ranked(seen, "moegs.layer.hot_expert", l).Select(v => (int)v));
            Assert.Equal([3, 5, 0], Ranked(seen, "moegs.layer.cold_expert", l).Select(v => (int)v));
            Assert.Equal(summary.Window.Layers[l].HottestExpert, (int)Ranked(seen, "moegs.layer.hot_expert", l)[0]);
            Assert.Equal(summary.Window.Layers[l].ColdestExpert, (int)Ranked(seen, "moegs.layer.cold_expert", l)[0]);
        }
    }

    /// <summary>
    /// A collection while another thread records reads one state: each layer's slots since the start
    /// (from the summary) equal the sum of its experts' counts, its window load the sum of the window
    /// row, and the steps those slots imply.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public async Task ACollectionWhileRecordingReadsOneState(string engine)
    {
        using var stats = Model(engine, window: 3);
        using var stop = new CancellationTokenSource();
        var step = Enumerable.Range(0, Layers * 4).Select(i => i % Experts).ToArray();
        var recorder = Task.Run(
            () =>
            {
                while (!stop.IsCancellationRequested)
                {
                    stats.RecordStep(step, tokens: 4, topK: 1);
                }
            },
            TestContext.Current.CancellationToken);

        try
        {
            for (var collection = 0; collection < 40; collection++)
            {
                using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: Experts, expertSeries: true);
                var seen = Collect(metrics);
                var steps = Single(seen, "moegs.model.steps");
                for (var l = 0; l < Layers; l++)
                {
                    var slots = PerLayer(seen, "moegs.layer.slots", l);
                    Assert.Equal(4 * steps, slots);
                    Assert.Equal(slots, Enumerable.Range(0, Experts).Sum(e => PerExpert(seen, "moegs.expert.tokens", l, e)));
                    Assert.Equal(4 * Math.Min(steps, 3), Enumerable.Range(0, Experts).Sum(e => PerExpert(seen, "moegs.expert.window_load", l, e)));
                    Assert.Equal(4 * Math.Min(steps, 3), Ranked(seen, "moegs.layer.hot_expert.load", l).Sum());
                }
            }
        }
        finally
        {
            await stop.CancelAsync();
            await recorder;
        }
    }

    /// <summary>The recent series are the summary cut to the window's newest steps, which differs from the window's here.</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void TheRecentSeriesAreTheBalanceOverTheWindowsNewestSteps(string engine)
    {
        using var stats = Model(engine, window: 2);
        using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: 0, recentSteps: 1);
        RecordSteps(stats);

        var seen = Collect(metrics);

        var recent = stats.Summary(1);
        Assert.NotEqual(stats.Summary().Window.MeanBalancedness, recent.Window.MeanBalancedness);
        Assert.Equal(1, Single(seen, "moegs.model.recent.steps"));
        Assert.Equal(recent.Window.MinBalancedness, Single(seen, "moegs.model.recent.balancedness.min"));
        Assert.Equal(recent.Window.MeanBalancedness, Single(seen, "moegs.model.recent.balancedness.mean"));
        Assert.Equal(recent.Window.TokenWeightedBalancedness, Single(seen, "moegs.model.recent.balancedness.token_weighted"));
        for (var l = 0; l < Layers; l++)
        {
            Assert.Equal(recent.Window.Layers[l].Balancedness, PerLayer(seen, "moegs.layer.recent.balancedness", l));
        }

        Assert.Equal(ModelRoutingStatsMetrics.SeriesCount(Layers, Experts, topExperts: 0, expertSeries: false, recentSeries: true), seen.Count);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(Experts + 1)]
    public void ATopKOutsideTheExpertsIsRefusedNamingIt(int topExperts)
    {
        using var stats = Model("managed", window: 2);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStatsMetrics(stats, topExperts));
        Assert.Equal("topExperts", error.ParamName);
        Assert.StartsWith(FormattableString.Invariant($"topExperts is {topExperts}; give 0 to {Experts}"), error.Message);
    }

    /// <summary>An EP size of no ranks, of fewer than none, or not dividing the experts is refused naming it.</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(-2)]
    [InlineData(4)]
    [InlineData(Experts + 1)]
    public void AnEpSizeThatDoesNotDivideTheExpertsIsRefusedNamingIt(int epSize)
    {
        using var stats = Model("managed", window: 2);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStatsMetrics(stats, epSize: epSize));
        Assert.Equal("epSize", error.ParamName);
        Assert.StartsWith(FormattableString.Invariant($"epSize is {epSize}; give a divisor of the model's {Experts} experts"), error.Message);
    }

    /// <summary>
    /// A series count of sizes no model has is refused naming the size, as the constructor refuses them: beyond a
    /// model's sizes the count wrapped a long (int.MaxValue layers and experts counted -9.2e18 series).
    /// </summary>
    [Theory]
    [InlineData(-1, 4, 2, "layers is -1; give 1 to 1,024, as a model takes.")]
    [InlineData(0, 4, 2, "layers is 0; give 1 to 1,024, as a model takes.")]
    [InlineData(int.MaxValue, 4, 2, "layers is 2147483647; give 1 to 1,024, as a model takes.")]
    [InlineData(3, -4, 2, "experts is -4; give 1 to 4,096, as a model takes.")]
    [InlineData(3, 0, 0, "experts is 0; give 1 to 4,096, as a model takes.")]
    [InlineData(3, int.MaxValue, 0, "experts is 2147483647; give 1 to 4,096, as a model takes.")]
    [InlineData(3, 4, -2, "topExperts is -2; give 0 to 4, the experts.")]
    [InlineData(3, 4, -1, "topExperts is -1; give 0 to 4, the experts.")]
    [InlineData(1, 4, 10, "topExperts is 10; give 0 to 4, the experts.")]
    public void ASeriesCountOfSizesNoModelHasIsRefusedNamingThem(int layers, int experts, int topExperts, string message)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => ModelRoutingStatsMetrics.SeriesCount(layers, experts, topExperts, expertSeries: true));

        Assert.Equal(message[..message.IndexOf(' ', StringComparison.Ordinal)], error.ParamName);
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
    }

    /// <summary>The largest model's sizes are counted, one layer's series times its layers beside the model-wide ones.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TheLargestModelsSeriesAreCounted(bool expertSeries)
    {
        const int layers = ModelRoutingStatsOptions.MaxLayers, experts = RoutingStatsOptions.MaxDeviceExperts;
        long Count(int l) => ModelRoutingStatsMetrics.SeriesCount(l, experts, topExperts: experts, expertSeries, recentSeries: true, epSeries: true);

        var perLayer = Count(2) - Count(1);

        Assert.True(perLayer > experts, $"{perLayer} series a layer");
        Assert.Equal(Count(1) + ((layers - 1) * perLayer), Count(layers));
    }

    [Fact]
    public void TheDefaultTopKIsAtMostTheExperts()
    {
        using var stats = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 1, Experts = 2 });
        using var metrics = new ModelRoutingStatsMetrics(stats);
        stats.RecordStep([0, 1, 1], tokens: 3, topK: 1);
        Assert.Equal([1, 0], Ranked(Collect(metrics), "moegs.layer.hot_expert", 0).Select(v => (int)v));
    }

    /// <summary>
    /// A collection of a device model, every option on, is one wait for the stream: the summaries, window
    /// load, totals and counts are staged on the device and copied back at once, whatever the layers. Its
    /// figures are those of the managed model fed the same steps.
    /// </summary>
    [Fact]
    public void ACollectionOfADeviceModelIsOneWaitAndTheManagedModelsFigures()
    {
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = 2, ExpertCapacity = 3 };
        var engine = new MoeGpuStats.Device.DeviceModelEngine(TestAccelerators.Require("cpu"), options);
        using var device = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(options);
        RecordSteps(device);
        RecordSteps(managed);
        // Publishers share the meter's instruments: one at a time, so that a collection reads one model.
        List<(string Name, double Value, Dictionary<string, object?> Tags)> seen, expected;
        using (var deviceMetrics = new ModelRoutingStatsMetrics(device, topExperts: 2, expertSeries: true, refreshInterval: TimeSpan.Zero, recentSteps: 1, epSize: 2))
        {
            var before = engine.ReadWaits;
            seen = Collect(deviceMetrics);
            Assert.Equal(1, engine.ReadWaits - before);
        }

        using (var managedMetrics = new ModelRoutingStatsMetrics(managed, topExperts: 2, expertSeries: true, refreshInterval: TimeSpan.Zero, recentSteps: 1, epSize: 2))
        {
            expected = Collect(managedMetrics);
        }

        Assert.Equal(Readable(expected), Readable(seen));
        Assert.Contains(seen, m => m.Name == "moegs.expert.tokens" && m.Value > 0);
        Assert.Contains(seen, m => m.Name == "moegs.model.recent.balancedness.min");

        static string[] Readable(List<(string Name, double Value, Dictionary<string, object?> Tags)> measurements) =>
            [.. measurements.Select(m => $"{m.Name}{{{string.Join(",", m.Tags.OrderBy(t => t.Key).Select(t => $"{t.Key}={t.Value}"))}}} {m.Value:R}").Order(StringComparer.Ordinal)];
    }

    /// <summary>Without a K, a model of more experts than <see cref="ModelRoutingStatsMetrics.DefaultTopExperts"/> publishes that many hottest and coldest per layer.</summary>
    [Fact]
    public void WithoutAKTheDefaultTopExpertsArePublishedPerLayer()
    {
        using var stats = Model("managed", window: 2);
        using var metrics = new ModelRoutingStatsMetrics(stats);
        RecordSteps(stats);

        var seen = Collect(metrics);

        Assert.True(Experts > ModelRoutingStatsMetrics.DefaultTopExperts, "the model has more experts than the default K");
        var load = stats.WindowLoad();
        for (var l = 0; l < Layers; l++)
        {
            var row = load.AsSpan(l * Experts, Experts).ToArray();
            var hottest = Enumerable.Range(0, Experts).OrderByDescending(e => row[e]).ThenByDescending(e => e).Take(ModelRoutingStatsMetrics.DefaultTopExperts);
            var coldest = Enumerable.Range(0, Experts).OrderBy(e => row[e]).ThenBy(e => e).Take(ModelRoutingStatsMetrics.DefaultTopExperts);
            Assert.Equal(hottest, Ranked(seen, "moegs.layer.hot_expert", l).Select(v => (int)v));
            Assert.Equal(coldest, Ranked(seen, "moegs.layer.cold_expert", l).Select(v => (int)v));
        }

        Assert.Equal(ModelRoutingStatsMetrics.SeriesCount(Layers, Experts, ModelRoutingStatsMetrics.DefaultTopExperts, expertSeries: false), seen.Count);
    }

    /// <summary>
    /// Dead experts are those without a slot in the window, not since the start: a window of one step that loads two
    /// experts of each layer has the others dead, though every expert had slots in the step before.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void DeadExpertsAreThoseWithoutASlotInTheWindow(string engine)
    {
        using var stats = Model(engine, window: 1);
        using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: 0, refreshInterval: TimeSpan.Zero);
        stats.RecordStep([.. Enumerable.Range(0, Layers * Experts).Select(i => i % Experts)], tokens: Experts, topK: 1);
        stats.RecordStep(Step(hot: 1), tokens: 4, topK: 1);

        var seen = Collect(metrics);

        var summary = stats.Summary();
        for (var l = 0; l < Layers; l++)
        {
            Assert.Equal(0, summary.SinceStart.Layers[l].DeadExperts);
            Assert.Equal(summary.Window.Layers[l].DeadExperts, PerLayer(seen, "moegs.layer.dead_experts", l));
            Assert.Equal(Experts - 2, PerLayer(seen, "moegs.layer.dead_experts", l));
        }
    }

    /// <summary>
    /// A layer idle in the window (invalid ids and padding only), and a model without a step, are balanced over EP ranks by
    /// convention, as over experts: the EP series are the summary over the ranks, 1 for the idle model, not 0 (which an
    /// alert on a low EP balance would fire on).
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void IdleLayersAreBalancedOverEpRanksAsInTheSummary(string engine)
    {
        const int Ranks = 3;
        using var stats = Model(engine, window: 1);
        using var metrics = new ModelRoutingStatsMetrics(stats, topExperts: 0, refreshInterval: TimeSpan.Zero, epSize: Ranks);
        int[] rankOf = [.. Enumerable.Range(0, Experts).Select(e => e / (Experts / Ranks))];

        var idle = Collect(metrics);
        Assert.Equal(1, Single(idle, "moegs.model.ep.balancedness.token_weighted"));
        Assert.Equal(1, Single(idle, "moegs.model.ep.balancedness.min"));
        Assert.Equal(stats.Summary(rankOf).Window.TokenWeightedBalancedness, Single(idle, "moegs.model.ep.balancedness.token_weighted"));

        // Layer 0 skewed onto rank 0, layer 1 idle, layer 2 spread over the ranks.
        stats.RecordStep([0, 0, 1, 1, /* layer 1: */ -1, Experts, -1, Experts + 2, /* layer 2: */ 0, 2, 4, 5], tokens: 4, topK: 1);
        var seen = Collect(metrics);

        var byRank = stats.Summary(rankOf).Window;
        Assert.Equal(1, byRank.Layers[1].Balancedness);
        Assert.Equal(byRank.MinBalancedness, Single(seen, "moegs.model.ep.balancedness.min"), 12);
        Assert.Equal(byRank.TokenWeightedBalancedness, Single(seen, "moegs.model.ep.balancedness.token_weighted"), 12);
        Assert.True(byRank.MinBalancedness > 0, "every layer's load is over the ranks or idle");
    }

    private static ModelRoutingStats Model(string engine, int window)
    {
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = window, ExpertCapacity = 3 };
        return engine == "managed" ? new ModelRoutingStats(options) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), options);
    }

    /// <summary>Three steps of skewed, different layers, with ties, padding, invalid ids, slots beyond the capacity of 3 and losses; the window of 2 drops the first.</summary>
    private static void RecordSteps(ModelRoutingStats stats)
    {
        var random = new Random(5);
        for (var step = 0; step < 3; step++)
        {
            var ids = new int[Layers * 8 * 2];
            for (var i = 0; i < ids.Length; i++)
            {
                var layer = i / 16;
                ids[i] = random.Next(12) switch
                {
                    0 => -1,
                    1 => Experts + 3,
                    var r => (int)(random.NextDouble() * random.NextDouble() * (Experts - layer)) % Experts,
                };
            }

            // Tenths, whose float is no short binary fraction: published as the float's shortest decimal, not its binary tail.
            float[] losses = [.. Enumerable.Range(0, Layers).Select(l => 0.1f * (l + step + 1))];
            stats.RecordStep(ids, tokens: 8, topK: 2, loadBalanceLosses: losses, routerZLosses: [.. losses.Select(x => x + 1)]);
        }
    }

    /// <summary>One step of four tokens, three to <paramref name="hot"/>, in every layer.</summary>
    private static int[] Step(int hot) =>
        [.. Enumerable.Range(0, Layers).SelectMany(_ => new[] { hot, hot, hot, 0 })];

    private static List<(string Name, double Value, Dictionary<string, object?> Tags)> Collect(ModelRoutingStatsMetrics metrics)
    {
        var seen = new List<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            // Other tests publish through meters of the same name at the same time: keep this object's.
            if (ReferenceEquals(instrument.Meter, metrics.Meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        void Keep(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
            seen.Add((instrument.Name, value, tags.ToArray().ToDictionary(t => t.Key, t => t.Value)));
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Keep(i, v, tags));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Keep(i, v, tags));
        listener.Start();
        listener.RecordObservableInstruments();
        return seen;
    }

    private static double Single(List<(string Name, double Value, Dictionary<string, object?> Tags)> seen, string name) =>
        seen.Single(m => m.Name == name).Value;

    private static double PerLayer(List<(string Name, double Value, Dictionary<string, object?> Tags)> seen, string name, int layer) =>
        seen.Single(m => m.Name == name && Equals(m.Tags["layer"], $"{layer}")).Value;

    private static double PerExpert(List<(string Name, double Value, Dictionary<string, object?> Tags)> seen, string name, int layer, int expert) =>
        seen.Single(m => m.Name == name && Equals(m.Tags["layer"], $"{layer}") && Equals(m.Tags["expert"], expert)).Value;

    private static double[] Ranked(List<(string Name, double Value, Dictionary<string, object?> Tags)> seen, string name, int layer) =>
        [.. seen.Where(m => m.Name == name && Equals(m.Tags["layer"], $"{layer}")).OrderBy(m => (int)m.Tags["position"]!).Select(m => m.Value)];
}
