using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Tests.Telemetry;

[Collection(nameof(SharedMeterCollection))]
public sealed class SharedInstrumentsTests
{
    /// <summary>
    /// The host's meter factory (AddMetrics) hands every publisher the same meter and ignores its Dispose:
    /// a disposed publisher stops reporting all the same, and the live one goes on.
    /// </summary>
    [Fact]
    public void ADisposedPublisherStopsReportingOnTheHostsMeterFactory()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = services.GetRequiredService<IMeterFactory>();
        using var first = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var second = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        first.RecordRouting([0, 1], tokens: 2, topK: 1);
        second.RecordRouting([1, 1, 1], tokens: 3, topK: 1);
        var firstMetrics = new RoutingStatsMetrics(first, layer: "first", meterFactory: factory);
        using var secondMetrics = new RoutingStatsMetrics(second, layer: "second", meterFactory: factory);
        Assert.Equal(["first=2", "second=3"], Tokens(factory));

        firstMetrics.Dispose();
        firstMetrics.Dispose();

        Assert.Equal(["second=3"], Tokens(factory));
        using var again = new RoutingStatsMetrics(first, layer: "again", meterFactory: factory);
        Assert.Equal(["again=2", "second=3"], Tokens(factory));
    }

    /// <summary>
    /// Publishers of one meter share its instruments: one <c>moegs.expert.tokens</c> for the layers' and
    /// the model's per-expert series, not three of one name and two descriptions (which the OpenTelemetry
    /// SDK reports as a conflict and exports as separate streams of one name).
    /// </summary>
    [Fact]
    public void PublishersOfOneMeterShareOneInstrumentPerName()
    {
        var published = new List<Instrument>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, _) =>
        {
            if (instrument.Meter.Name == RoutingStatsMetrics.MeterName && instrument.Meter.Scope is null)
            {
                lock (published)
                {
                    published.Add(instrument);
                }
            }
        };
        listener.Start();
        using var layer = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var other = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 1, Experts = 2 });
        using var layerMetrics = new RoutingStatsMetrics(layer, layer: "a");
        using var otherMetrics = new RoutingStatsMetrics(other, layer: "b");
        using var modelMetrics = new ModelRoutingStatsMetrics(model, expertSeries: true);

        var meters = new[] { layerMetrics.Meter, otherMetrics.Meter, modelMetrics.Meter };
        var instruments = published.Where(i => meters.Contains(i.Meter)).ToList();
        Assert.All(instruments.GroupBy(i => i.Name), g => Assert.Single(g.Select(i => (i.Unit, i.Description, i.GetType())).Distinct()));
        Assert.Same(layerMetrics.Meter, otherMetrics.Meter);
        Assert.Same(layerMetrics.Meter, modelMetrics.Meter);
        Assert.Equal(instruments.Count, instruments.Select(i => i.Name).Distinct().Count());
        var expertTokens = Assert.Single(instruments, i => i.Name == "moegs.expert.tokens");
        Assert.Equal("{slot}", expertTokens.Unit);
    }

    /// <summary>
    /// A publisher whose statistics were disposed first reports nothing; the others of the instrument it
    /// shares go on reporting (a throw from its callback would take their measurements with it).
    /// </summary>
    [Fact]
    public void APublisherOutlivedByItsStatisticsLeavesTheOthersReporting()
    {
        using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var factory = services.GetRequiredService<IMeterFactory>();
        var gone = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var live = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        gone.RecordRouting([0, 1], tokens: 2, topK: 1);
        live.RecordRouting([1, 1, 1], tokens: 3, topK: 1);
        using var goneMetrics = new RoutingStatsMetrics(gone, layer: "gone", refreshInterval: TimeSpan.Zero, meterFactory: factory);
        using var liveMetrics = new RoutingStatsMetrics(live, layer: "live", refreshInterval: TimeSpan.Zero, meterFactory: factory);
        Assert.Equal(["gone=2", "live=3"], Tokens(factory));

        gone.Dispose();

        Assert.Equal(["live=3"], Tokens(factory));
    }

    /// <summary>
    /// A publisher whose reading fails otherwise (a device error) fails its own measurements only: the
    /// others of the instrument it shares are reported, and its error still reaches the listener.
    /// </summary>
    [Fact]
    public void APublisherWhoseReadingFailsLeavesTheOthersReportingAndItsErrorReachesTheListener()
    {
        using var factory = new TestMeterFactory();
        var shared = SharedInstruments.Acquire(factory);
        var (failing, live) = (new object(), new object());
        shared.ObservableCounter<long>(failing, "moegs.tokens", () => throw new InvalidOperationException("device lost"), "{token}", "Tokens recorded.");
        shared.ObservableCounter<long>(live, "moegs.tokens", () => [new Measurement<long>(3, new KeyValuePair<string, object?>("layer", "live"))], "{token}", "Tokens recorded.");
        try
        {
            var seen = new List<string>();
            var error = Assert.Throws<AggregateException>(() => Tokens(factory, seen));
            Assert.Equal("device lost", Assert.IsType<InvalidOperationException>(Assert.Single(error.InnerExceptions)).Message);
            Assert.Equal(["live=3"], seen);
        }
        finally
        {
            shared.Release(failing);
            shared.Release(live);
        }
    }

    /// <summary>
    /// Without a meter factory, disposing a publisher while another lives ends nothing: the other's series go on. Disposing
    /// the last ends the process's meter (a listener is told its instruments' measurements completed, so an exporter stops
    /// serving them), and a publisher made after it gets a new meter.
    /// </summary>
    [Fact]
    public void WithoutAFactoryDisposingTheLastPublisherEndsTheMeterAndNoneBefore()
    {
        using var first = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        using var second = new RoutingStats(new RoutingStatsOptions { Experts = 2 });
        first.RecordRouting([0, 1], tokens: 2, topK: 1);
        second.RecordRouting([1, 1, 1], tokens: 3, topK: 1);
        var firstMetrics = new RoutingStatsMetrics(first, layer: "first");
        var secondMetrics = new RoutingStatsMetrics(second, layer: "second");
        var meter = firstMetrics.Meter;
        var seen = new List<string>();
        var completed = new List<string>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter, meter) && instrument.Name == "moegs.tokens")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
            MeasurementsCompleted = (instrument, _) => completed.Add(instrument.Name),
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) => seen.Add($"{tags.ToArray().Single(t => t.Key == "layer").Value}={value}"));
        listener.Start();

        firstMetrics.Dispose();
        listener.RecordObservableInstruments();

        Assert.Equal(["second=3"], seen);
        Assert.Empty(completed);

        secondMetrics.Dispose();

        Assert.Equal(["moegs.tokens"], completed);
        using var again = new RoutingStatsMetrics(first, layer: "again");
        Assert.NotSame(meter, again.Meter);
    }

    private static List<string> Tokens(IMeterFactory factory) => Tokens(factory, []);

    /// <summary>The <c>moegs.tokens</c> measurements of one collection, into <paramref name="seen"/> as they come (a collection that throws leaves those it took).</summary>
    private static List<string> Tokens(IMeterFactory factory, List<string> seen)
    {
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Scope == factory && instrument.Name == "moegs.tokens")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) => seen.Add($"{tags.ToArray().Single(t => t.Key == "layer").Value}={value}"));
        listener.Start();
        listener.RecordObservableInstruments();
        seen.Sort(StringComparer.Ordinal);
        return seen;
    }
}
