using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Tests.Telemetry;

// Publishers without a meter factory share one meter per process: the classes that create them run one at a time.
[Collection(nameof(SharedMeterCollection))]
public sealed class RoutingStatsMetricsTests
{
    /// <summary>
    /// The latency histogram advises its buckets, in seconds, those <c>moegs --metrics-port</c> serves:
    /// OpenTelemetry's default buckets (0, 5, 10, ... 10000) are for milliseconds and would put every
    /// latency under 5 s in one bucket.
    /// </summary>
    [Fact]
    public void TheLatencyHistogramAdvisesBucketsInSeconds()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        Histogram<double>? latency = null;
        using var listener = new MeterListener();
        using var metrics = new RoutingStatsMetrics(stats);
        listener.InstrumentPublished = (instrument, _) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter) && instrument.Name == "moegs.routing.latency")
            {
                latency = (Histogram<double>)instrument;
            }
        };
        listener.Start();

        Assert.NotNull(latency);
        Assert.Equal("s", latency.Unit);
        Assert.Equal(RoutingStatsMetrics.LatencyBucketsSeconds, latency.Advice?.HistogramBucketBoundaries);
    }

    /// <summary>
    /// <c>moegs.slots.dropped</c> is <see cref="RoutingStats.SlotsDropped"/>, which without a capacity counts k
    /// slots per reported dropped token, and its description says so, not only "beyond the expert capacity".
    /// </summary>
    [Fact]
    public void DroppedSlotsWithoutACapacityAreDescribedAndCounted()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        using var metrics = new RoutingStatsMetrics(stats);
        stats.RecordRouting([0, 1, 2, 3, 0, 1], tokens: 3, topK: 2, tokensDropped: 1);
        Instrument? dropped = null;
        long? value = null;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter) && instrument.Name == "moegs.slots.dropped")
            {
                dropped = instrument;
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, v, _, _) => value = v);
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.NotNull(dropped);
        Assert.Equal("Routed slots dropped: beyond the expert capacity; without one, k per reported dropped token (a decision's dropped tokens).", dropped.Description);
        Assert.Equal(2UL, stats.SlotsDropped);
        Assert.Equal(2L, value);
    }

    /// <summary>
    /// Without load, before any record or after a batch of invalid ids alone (utilizations of 0, their mean 0), one
    /// layer's max/mean gauge reads 1, as a model's layer gauge does (it read 0 before any record, a ratio no load has, so
    /// the two gauges of one alert rule disagreed on the same empty layer; 0/0 would read NaN).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MaxMeanRatioWithoutLoadIsOneAsForAModelsLayer(bool invalidIdsOnly)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 1, Experts = 4 });
        using var metrics = new RoutingStatsMetrics(stats);
        if (invalidIdsOnly)
        {
            stats.RecordRouting([-1, 4, 9], tokens: 3, topK: 1);
            model.RecordStep([-1, 4, 9], tokens: 3, topK: 1);
            Assert.Equal(0f, stats.UtilizationSummary()["mean_utilization"]);
        }

        double? ratio = null;
        using var listener = Listener<double>(metrics, "moegs.load.max_mean_ratio", value => ratio = value);
        listener.RecordObservableInstruments();

        Assert.Equal(model.Summary().Window.Layers[0].MaxMeanRatio, ratio);
        Assert.Equal(1, ratio);
    }

    [Fact]
    public void OneCollectionReadsEveryInstrumentFromOneSnapshot()
    {
        using var stats = RoutingStats.OnDevice(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = 4 });
        using var metrics = new RoutingStatsMetrics(stats, layer: "layer7");
        stats.RecordRouting([0, 1, 1, 3, 9, 3, 3, 3], tokens: 4, topK: 2, loadBalanceLoss: 0.5f);
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(2.5));

        var seen = new List<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        // This object's meter, not every meter of its name: a collection of other tests' instruments
        // would take readings of their statistics, which their own counts of readings do not expect.
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        void Keep(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
            seen.Add((instrument.Name, value, Tags(tags)));

        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => Keep(i, v, tags));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => Keep(i, v, tags));
        listener.Start();
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(4));
        listener.RecordObservableInstruments();

        Assert.Equal(1, metrics.SnapshotsTaken);
        Assert.Equal(1, Value("moegs.routings"));
        Assert.Equal(4, Value("moegs.tokens"));
        Assert.Equal(1, Value("moegs.expert_ids.invalid"));
        Assert.Equal(0.5, Value("moegs.loss.load_balance"), 6);
        Assert.Equal(0.004, Value("moegs.routing.latency"), 9);
        var perExpert = seen.Where(m => m.Name == "moegs.expert.tokens").ToDictionary(m => (int)m.Tags["expert"]!, m => m.Value);
        Assert.Equal(new Dictionary<int, double> { [0] = 1, [1] = 2, [2] = 0, [3] = 4 }, perExpert);
        Assert.Equal(7, Value("moegs.slots.routed"));
        Assert.Equal(0, Value("moegs.slots.dropped"));
        Assert.Equal(14, seen.Select(m => m.Name).Distinct().Count());
        // Slots per expert 1, 2, 0 and 4: a mean of 1.75 over the most, 4.
        Assert.Equal(0.4375, Value("moegs.balancedness"));
        // A float statistic is published as its shortest decimal, not as the float widened (its binary tail).
        var expectedRatio = stats.UtilizationSummary()["max_utilization"] / stats.UtilizationSummary()["mean_utilization"];
        Assert.Equal(double.Parse(expectedRatio.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture), Value("moegs.load.max_mean_ratio"));
        Assert.Equal(double.Parse(stats.UtilizationCv().ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture), Value("moegs.utilization.cv"));
        Assert.Equal(0.5, Value("moegs.loss.load_balance"));
        Assert.Equal(100, Value("moegs.routing.efficiency"));

        double Value(string name) => seen.Single(m => m.Name == name).Value;
    }

    /// <summary>
    /// A model publishes through one <see cref="RoutingStatsMetrics"/> per layer (<see cref="ModelRoutingStats.Layer"/>,
    /// tagged with the layer): each layer's per-expert counters are its own counts, which a metrics backend sums
    /// across replicas by layer and expert (docs/scaling.md).
    /// </summary>
    [Fact]
    public void AModelsLayersPublishTheirOwnCountsUnderTheirLayerTag()
    {
        using var model = ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), new ModelRoutingStatsOptions { Layers = 2, Experts = 3 });
        int[] ids = [0, 0, 1, 2, /* layer 1: */ 2, 2, 2, 1];
        model.RecordStep(ids, tokens: 2, topK: 2);
        var layers = Enumerable.Range(0, 2).Select(model.Layer).ToArray();
        var metrics = layers.Select((layer, l) => new RoutingStatsMetrics(layer, layer: $"model-test.{l}")).ToArray();
        var seen = new Dictionary<(string Layer, int Expert), double>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            // These objects' meters, not every meter of their name, as above.
            if (metrics.Any(m => ReferenceEquals(instrument.Meter, m.Meter)) && instrument.Name == "moegs.expert.tokens")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            var parsed = Tags(tags);
            seen[((string)parsed["layer"]!, (int)parsed["expert"]!)] = value;
        });
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal(
            new Dictionary<(string, int), double>
            {
                [("model-test.0", 0)] = 2, [("model-test.0", 1)] = 1, [("model-test.0", 2)] = 1,
                [("model-test.1", 0)] = 0, [("model-test.1", 1)] = 1, [("model-test.1", 2)] = 3,
            },
            seen);
        foreach (var disposable in metrics.Cast<IDisposable>().Concat(layers))
        {
            disposable.Dispose();
        }
    }

    /// <summary>
    /// Statistics without an expert count empty their counts on a reset: the experts reported before are
    /// reported as 0 (a counter reset), not left out, which an exporter would serve at their last count.
    /// </summary>
    [Fact]
    public void ExpertsReportedOnceAreReportedAsZeroAfterAReset()
    {
        using var stats = new RoutingStats();
        using var metrics = new RoutingStatsMetrics(stats, refreshInterval: TimeSpan.Zero);
        var seen = new Dictionary<int, long>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter, metrics.Meter) && instrument.Name == "moegs.expert.tokens")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) => seen[(int)Tags(tags)["expert"]!] = value);
        listener.Start();

        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1, 2], TotalTokens = 4 });
        listener.RecordObservableInstruments();
        Assert.Equal(new Dictionary<int, long> { [0] = 1, [1] = 1, [2] = 2 }, seen);

        stats.Reset();
        seen.Clear();
        listener.RecordObservableInstruments();
        Assert.Equal(new Dictionary<int, long> { [0] = 0, [1] = 0, [2] = 0 }, seen);
    }

    /// <summary>
    /// Collections on several threads at once, each taking a new snapshot (refresh interval 0) while
    /// records go on, share readings without disposing one under another, never throw, and each
    /// report one state.
    /// </summary>
    [Fact]
    public void ManyCollectionsAtOnceNeverThrow()
    {
        using var stats = RoutingStats.OnDevice(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = 4 });
        using var metrics = new RoutingStatsMetrics(stats, refreshInterval: TimeSpan.Zero);
        const int collectors = 6;
        var failures = new Exception?[collectors + 1];
        var collections = new int[collectors];
        var deadline = Stopwatch.StartNew();
        var limit = TimeSpan.FromSeconds(1.5);
        var threads = Enumerable.Range(0, collectors).Select(c => new Thread(() =>
        {
            try
            {
                using var listener = new MeterListener();
                listener.InstrumentPublished = (instrument, l) =>
                {
                    if (ReferenceEquals(instrument.Meter, metrics.Meter))
                    {
                        l.EnableMeasurementEvents(instrument);
                    }
                };
                long routings = 0, tokens = 0, slots = 0;
                listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
                {
                    switch (instrument.Name)
                    {
                        case "moegs.routings": routings = value; break;
                        case "moegs.tokens": tokens = value; break;
                        case "moegs.expert.tokens": slots += value; break;
                    }
                });
                listener.Start();
                while (deadline.Elapsed < limit)
                {
                    var previous = routings;
                    slots = 0;
                    listener.RecordObservableInstruments();
                    // Every instrument of one collection reports one snapshot, whatever the other threads collect.
                    Assert.True(routings >= previous, $"{routings} routings after {previous}");
                    Assert.True(tokens == 2 * routings, $"{tokens} tokens in {routings} batches of 2");
                    Assert.True(slots == 4 * routings, $"{slots} slots in {routings} batches of 4");
                    collections[c]++;
                }
            }
            catch (Exception e)
            {
                failures[c] = e;
            }
        })).ToList();
        threads.Add(new Thread(() =>
        {
            try
            {
                while (deadline.Elapsed < limit)
                {
                    stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
                }
            }
            catch (Exception e)
            {
                failures[collectors] = e;
            }
        }));
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());

        Assert.All(failures, Assert.Null);
        Assert.All(collections, count => Assert.True(count > 0));
        Assert.True(metrics.SnapshotsTaken > collectors, "the collections did not take snapshots of their own");
    }

    /// <summary>
    /// Two listeners of other instruments collecting on one thread, a while apart, are two collections:
    /// the second reports a new reading once the first is older than the refresh interval (it went on
    /// with the first's, however old).
    /// </summary>
    [Fact]
    public void ListenersOfOtherInstrumentsOnOneThreadTakeTheirOwnReadings()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var metrics = new RoutingStatsMetrics(stats, refreshInterval: TimeSpan.FromMilliseconds(50));
        long routings = -1, tokens = -1;
        using var first = Listener<long>(metrics, "moegs.routings", value => routings = value);
        using var second = Listener<long>(metrics, "moegs.tokens", value => tokens = value);

        first.RecordObservableInstruments();
        for (var batch = 0; batch < 10; batch++)
        {
            stats.RecordRouting([0, 1], tokens: 1, topK: 2);
        }

        Thread.Sleep(CollectionReading<object>.CollectionGap + TimeSpan.FromMilliseconds(200));
        second.RecordObservableInstruments();

        Assert.Equal((0L, 10L), (routings, tokens));
        Assert.Equal(2, metrics.SnapshotsTaken);
    }

    /// <summary>
    /// Without a refresh interval a reading serves collections for 1 s: a second collection right after the first
    /// reports the first's reading, not the batch recorded between them.
    /// </summary>
    [Fact]
    public void ACollectionWithinASecondOfTheLastReportsItsReadingByDefault()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var metrics = new RoutingStatsMetrics(stats);
        var routings = new List<long>();
        using var listener = Listener<long>(metrics, "moegs.routings", routings.Add);

        var clock = Stopwatch.StartNew();
        listener.RecordObservableInstruments();
        stats.RecordRouting([0, 1], tokens: 1, topK: 2);
        listener.RecordObservableInstruments();
        if (clock.Elapsed >= TimeSpan.FromSeconds(1))
        {
            Assert.Skip($"The two collections took {clock.Elapsed.TotalSeconds:F1} s, past the default refresh interval this test checks.");
        }

        Assert.Equal([0L, 0L], routings);
        Assert.Equal(1, metrics.SnapshotsTaken);
    }

    /// <summary>No statistics is refused by name, before anything else is checked.</summary>
    [Fact]
    public void NullStatisticsAreRefusedByName()
    {
        Assert.Equal("stats", Assert.Throws<ArgumentNullException>(() => new RoutingStatsMetrics(null!)).ParamName);
        Assert.Equal("stats", Assert.Throws<ArgumentNullException>(() => new ModelRoutingStatsMetrics(null!)).ParamName);
    }

    /// <summary>
    /// Each counter and gauge is its own figure: <c>moegs.tokens.dropped</c> the tokens callers reported dropped (not
    /// the k slots per token that <c>moegs.slots.dropped</c> counts), <c>moegs.loss.router_z</c> the mean router
    /// z-loss (not the load-balancing loss beside it), and <c>moegs.routing.efficiency</c>, a percentage of no short
    /// binary fraction here, its float's shortest decimal as every float statistic.
    /// </summary>
    [Fact]
    public void DroppedTokensTheRouterZLossAndTheEfficiencyAreTheirOwnFigures()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        using var capped = new RoutingStats(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 1 });
        using var metrics = new RoutingStatsMetrics(stats, layer: "uncapped");
        using var cappedMetrics = new RoutingStatsMetrics(capped, layer: "capped");
        stats.RecordRouting([0, 1, 2, 3, 0, 1], tokens: 3, topK: 2, loadBalanceLoss: 0.5f, routerZLoss: 0.1f, tokensDropped: 1);
        // Three slots, one beyond expert 0's capacity of 1: two thirds kept.
        capped.RecordRouting([0, 0, 1], tokens: 3, topK: 1);
        var seen = new List<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => seen.Add((i.Name, v, Tags(tags))));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => seen.Add((i.Name, v, Tags(tags))));
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal((1UL, 2UL), (stats.TokensDropped, stats.SlotsDropped));
        Assert.Equal(1, Value("moegs.tokens.dropped", "uncapped"));
        Assert.Equal(2, Value("moegs.slots.dropped", "uncapped"));
        Assert.Equal(0.5, Value("moegs.loss.load_balance", "uncapped"));
        Assert.Equal(double.Parse(stats.AverageRouterZLoss.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture), Value("moegs.loss.router_z", "uncapped"));
        Assert.Equal(0.1, Value("moegs.loss.router_z", "uncapped"));
        Assert.Equal((0UL, 1UL), (capped.TokensDropped, capped.SlotsDropped));
        Assert.Equal(0, Value("moegs.tokens.dropped", "capped"));
        Assert.Equal(1, Value("moegs.slots.dropped", "capped"));
        var efficiency = capped.RoutingEfficiency;
        Assert.NotEqual((double)efficiency, double.Parse(efficiency.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture));
        Assert.Equal(double.Parse(efficiency.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture), Value("moegs.routing.efficiency", "capped"));
        Assert.Equal(200.0 / 3, Value("moegs.routing.efficiency", "capped"), 5);

        double Value(string name, string layer) => seen.Single(m => m.Name == name && Equals(m.Tags["layer"], layer)).Value;
    }

    /// <summary>
    /// A disposed publisher records no more latencies: a publisher of the same statistics and layer made after it, on a meter
    /// that outlives both (the host's factory's), counts each latency once, not once more for the disposed one.
    /// </summary>
    [Fact]
    public void ADisposedPublisherRecordsNoMoreLatencies()
    {
        using var factory = new TestMeterFactory();
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        var latencies = new List<double>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Scope == factory && instrument.Name == "moegs.routing.latency")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<double>((_, value, _, _) => latencies.Add(value));
        listener.Start();
        var disposed = new RoutingStatsMetrics(stats, layer: "a", meterFactory: factory);
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(2));
        disposed.Dispose();
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(4));
        using var again = new RoutingStatsMetrics(stats, layer: "a", meterFactory: factory);

        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(8));

        Assert.Equal([0.002, 0.008], latencies);
    }

    /// <summary>A listener of one of <paramref name="metrics"/>' instruments, started, handing its values to <paramref name="seen"/>.</summary>
    private static MeterListener Listener<T>(RoutingStatsMetrics metrics, string instrumentName, Action<T> seen)
        where T : struct
    {
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter, metrics.Meter) && instrument.Name == instrumentName)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<T>((_, value, _, _) => seen(value));
        listener.Start();
        return listener;
    }

    private static Dictionary<string, object?> Tags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var result = new Dictionary<string, object?>();
        foreach (var tag in tags)
        {
            result[tag.Key] = tag.Value;
        }

        return result;
    }
}
