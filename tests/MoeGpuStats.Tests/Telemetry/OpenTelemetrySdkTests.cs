using System.Diagnostics.Tracing;
using MoeGpuStats.Telemetry;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;

namespace MoeGpuStats.Tests.Telemetry;

/// <summary>
/// The README's path: the publishers' instruments exported by the OpenTelemetry SDK with
/// <c>AddMeter("MoeGpuStats")</c>, here to its in-memory exporter.
/// </summary>
[Collection(nameof(SharedMeterCollection))]
public sealed class OpenTelemetrySdkTests
{
    /// <summary>
    /// Two layers' publishers and a model's: every instrument exports with its kind, unit and tags, the
    /// values the statistics read, the latency in second buckets, and the SDK warns of nothing. Disposing
    /// one layer's publisher ends its observable series and no other (its latency histogram stays, as
    /// the SDK aggregated it); recreating it brings them back.
    /// </summary>
    [Fact]
    public void TwoLayersAndAModelExportThroughTheSdkAndOutliveEachOthersDisposal()
    {
        using var warnings = new SdkWarnings();
        var exported = new List<Metric>();
        using var reader = new BaseExportingMetricReader(new InMemoryExporter<Metric>(exported));
        using var provider = Sdk.CreateMeterProviderBuilder()
            .AddMeter(RoutingStatsMetrics.MeterName)
            // The moegs endpoints that other tests start publish through meters of the same name, scoped to themselves.
            .AddView(instrument => instrument.Meter.Scope is null ? null : MetricStreamConfiguration.Drop)
            .AddReader(reader)
            .Build();
        using var first = new RoutingStats(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 2 });
        using var second = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, ExpertCapacity = 3 });
        var firstMetrics = new RoutingStatsMetrics(first, layer: "moe.3", refreshInterval: TimeSpan.Zero);
        using var secondMetrics = new RoutingStatsMetrics(second, layer: "moe.4", refreshInterval: TimeSpan.Zero);
        using var modelMetrics = new ModelRoutingStatsMetrics(model, topExperts: 2, expertSeries: true, refreshInterval: TimeSpan.Zero);
        first.RecordRouting([0, 0, 0, 1, 2, 9], tokens: 3, topK: 2, loadBalanceLoss: 0.5f);
        first.RecordRoutingLatency(TimeSpan.FromMilliseconds(2));
        second.RecordRouting([3, 3, 1, 1], tokens: 2, topK: 2);
        model.RecordStep([0, 0, 0, 0, 1, 2, 2, 3], tokens: 4, topK: 1);

        var metrics = Collect(reader, exported);

        Assert.Equal(MetricType.LongSum, metrics["moegs.routings"].MetricType);
        Assert.Equal(MetricType.LongSum, metrics["moegs.model.steps"].MetricType);
        Assert.Equal(MetricType.DoubleGauge, metrics["moegs.load.max_mean_ratio"].MetricType);
        Assert.Equal(MetricType.DoubleGauge, metrics["moegs.layer.balancedness"].MetricType);
        Assert.Equal(MetricType.LongGauge, metrics["moegs.layer.dead_experts"].MetricType);
        Assert.All(metrics.Values, m => Assert.False(string.IsNullOrEmpty(m.Description), m.Name));
        Assert.Equal("{slot}", metrics["moegs.slots.dropped"].Unit);
        Assert.Equal("%", metrics["moegs.routing.efficiency"].Unit);

        Assert.Equal((double)first.SlotsDropped, Value(metrics["moegs.slots.dropped"], ("layer", "moe.3")));
        Assert.Equal(1d, Value(metrics["moegs.slots.dropped"], ("layer", "moe.3")));
        Assert.Equal(1d, Value(metrics["moegs.expert_ids.invalid"], ("layer", "moe.3")));
        Assert.Equal(first.UtilizationCv(), Value(metrics["moegs.utilization.cv"], ("layer", "moe.3")), 6);
        for (var e = 0; e < 4; e++)
        {
            Assert.Equal((double)first.ExpertTokenCounts[e], Value(metrics["moegs.expert.tokens"], ("layer", "moe.3"), ("expert", e)));
            Assert.Equal((double)second.ExpertTokenCounts[e], Value(metrics["moegs.expert.tokens"], ("layer", "moe.4"), ("expert", e)));
        }

        var summary = model.Summary();
        for (var l = 0; l < 2; l++)
        {
            Assert.Equal(summary.Window.Layers[l].Balancedness, Value(metrics["moegs.layer.balancedness"], ("layer", $"{l}")), 6);
            Assert.Equal(summary.Window.Layers[l].MaxMeanRatio, Value(metrics["moegs.layer.max_mean_ratio"], ("layer", $"{l}")), 6);
            using var layer = model.Layer(l);
            Assert.Equal((double)layer.SlotsDropped, Value(metrics["moegs.layer.slots.dropped"], ("layer", $"{l}")));
            Assert.Equal((double)layer.ExpertTokenCounts[0], Value(metrics["moegs.expert.tokens"], ("layer", $"{l}"), ("expert", 0)));
        }

        Assert.Equal(summary.Window.TokenWeightedBalancedness, Value(metrics["moegs.model.balancedness.token_weighted"]), 6);

        // The model's series are bounded as documented; the layers' are one per layer and expert.
        Assert.Equal(2 * 2, Points(metrics["moegs.layer.hot_expert"]).Count);
        Assert.Equal((2 * 4) + (2 * 4), Points(metrics["moegs.expert.tokens"]).Count);

        // 2 ms in seconds, in the bucket (1 ms, 2.5 ms].
        var latency = metrics["moegs.routing.latency"];
        Assert.Equal(MetricType.Histogram, latency.MetricType);
        Assert.Equal("s", latency.Unit);
        var histogram = Assert.Single(Points(latency));
        Assert.Equal(0.002, histogram.GetHistogramSum(), 9);
        var buckets = new List<(double Bound, long Count)>();
        foreach (var bucket in histogram.GetHistogramBuckets())
        {
            buckets.Add((bucket.ExplicitBound, bucket.BucketCount));
        }

        Assert.Equal(RoutingStatsMetrics.LatencyBucketsSeconds.Append(double.PositiveInfinity), buckets.Select(b => b.Bound));
        Assert.Equal(2.5e-3, buckets.Single(b => b.Count == 1).Bound);

        firstMetrics.Dispose();
        for (var collection = 0; collection < 3; collection++)
        {
            metrics = Collect(reader, exported);
            Assert.Equal(2d, Value(metrics["moegs.tokens"], ("layer", "moe.4")));
            Assert.DoesNotContain(Points(metrics["moegs.tokens"]), p => Tag(p, "layer") == "moe.3");
            Assert.Equal(1d, Value(metrics["moegs.model.steps"]));

            // The histogram's aggregate is the SDK's: the disposed layer's latency stays, as the README says.
            Assert.Equal(0.002, Points(metrics["moegs.routing.latency"]).Single(p => Tag(p, "layer") == "moe.3").GetHistogramSum(), 9);
        }

        second.Reset();
        using var recreated = new RoutingStatsMetrics(first, layer: "moe.3");
        metrics = Collect(reader, exported);
        Assert.Equal(3d, Value(metrics["moegs.tokens"], ("layer", "moe.3")));
        Assert.Equal(0d, Value(metrics["moegs.tokens"], ("layer", "moe.4")));
        Assert.Empty(warnings.Seen);
    }

    /// <summary>Collections while another thread records: each exports what the statistics held at some point, and the last what they hold.</summary>
    [Fact]
    public async Task CollectionsWhileAnotherThreadRecords()
    {
        var exported = new List<Metric>();
        using var reader = new BaseExportingMetricReader(new InMemoryExporter<Metric>(exported));
        using var provider = Sdk.CreateMeterProviderBuilder()
            .AddMeter(RoutingStatsMetrics.MeterName)
            .AddView(instrument => instrument.Meter.Scope is null ? null : MetricStreamConfiguration.Drop)
            .AddReader(reader)
            .Build();
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        using var metrics = new RoutingStatsMetrics(stats, layer: "moe.0", refreshInterval: TimeSpan.Zero);
        using var stop = new CancellationTokenSource();
        var recording = Task.Run(() =>
        {
            var batches = 0;
            while (!stop.IsCancellationRequested || batches == 0)
            {
                stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);
                batches++;
            }

            return batches;
        });

        var last = 0d;
        for (var collection = 0; collection < 20; collection++)
        {
            var tokens = Value(Collect(reader, exported)["moegs.tokens"], ("layer", "moe.0"));
            Assert.True(tokens >= last && tokens % 4 == 0, $"{tokens} after {last}");
            last = tokens;
        }

        await stop.CancelAsync();
        var batches = await recording;
        Assert.Equal(4d * batches, Value(Collect(reader, exported)["moegs.tokens"], ("layer", "moe.0")));
    }

    /// <summary>
    /// README's names for OpenTelemetry's Prometheus exporter: the endpoint's names without the
    /// <c>moegpustats_</c> prefix (so every series the alert rules read is there once the prefix is
    /// dropped), the efficiency with <c>_percent</c>, and an <c>otel_scope_name</c> label.
    /// </summary>
    [Fact]
    public async Task ThePrometheusExporterServesTheEndpointsNamesWithoutThePrefix()
    {
        var cancel = TestContext.Current.CancellationToken;
        var port = PrometheusText.FreePort();
        using var provider = Sdk.CreateMeterProviderBuilder()
            .AddMeter(RoutingStatsMetrics.MeterName)
            .AddView(instrument => instrument.Meter.Scope is null ? null : MetricStreamConfiguration.Drop)
            .AddPrometheusHttpListener(options => (options.Host, options.Port) = ("localhost", port))
            .Build();
        using var router = new RoutingStats(new RoutingStatsOptions { Experts = 4, ExpertCapacity = 1 });
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, ExpertCapacity = 1 });
        using var routerMetrics = new RoutingStatsMetrics(router, layer: "moe.3", refreshInterval: TimeSpan.Zero);
        using var modelMetrics = new ModelRoutingStatsMetrics(model, topExperts: 1, refreshInterval: TimeSpan.Zero);
        router.RecordRouting([0, 0, 1, 9], tokens: 2, topK: 2);
        router.RecordRoutingLatency(TimeSpan.FromMilliseconds(2));
        model.RecordStep([0, 0, 1, 9, 2, 2, 2, 3], tokens: 4, topK: 1);

        using var http = new HttpClient();
        var text = await http.GetStringAsync($"http://localhost:{port}/metrics", cancel);
        var (_, samples) = PrometheusText.Parse(string.Join('\n', text.Split('\n').Where(line => !line.StartsWith("# EOF", StringComparison.Ordinal))));
        var served = samples.Keys.Select(sample => sample.Split('{')[0]).ToHashSet();

        var rules = await File.ReadAllTextAsync(Path.Combine(AppContext.BaseDirectory, "monitoring", "moegpustats-alerts.yml"), cancel);
        var read = System.Text.RegularExpressions.Regex.Matches(rules, @"\bmoegpustats_([a-z_]+)").Select(match => match.Groups[1].Value).ToHashSet();
        Assert.Contains("moegs_layer_slots_dropped_total", read);
        Assert.All(read, name => Assert.Contains(name, served));
        Assert.Contains("moegs_routing_latency_seconds_bucket", served);
        Assert.Contains("moegs_routing_efficiency_percent", served);
        Assert.DoesNotContain(served, name => name.StartsWith("moegpustats_", StringComparison.Ordinal));

        // Every name, not only the rules': moegs's own endpoints serve the exporter's names with the prefix.
        var ownPort = PrometheusText.FreePort();
        using (var own = MoeGpuStats.Cli.Output.MetricsEndpoint.Start(router, "localhost", ownPort, layer: "moe.3"))
        {
            var ownNames = PrometheusText.Parse(await http.GetStringAsync($"http://localhost:{ownPort}/metrics", cancel)).Samples.Keys.Select(sample => sample.Split('{')[0]["moegpustats_".Length..]);
            Assert.Subset(served, ownNames.ToHashSet());
        }

        using (var own = MoeGpuStats.Cli.Output.MetricsEndpoint.Start(model, "localhost", ownPort, topExperts: 1, expertSeries: false))
        {
            var ownNames = PrometheusText.Parse(await http.GetStringAsync($"http://localhost:{ownPort}/metrics", cancel)).Samples.Keys.Select(sample => sample.Split('{')[0]["moegpustats_".Length..]);
            Assert.Subset(served, ownNames.ToHashSet());
        }
        Assert.Contains(samples.Keys, sample => sample.StartsWith("moegs_model_steps_total{", StringComparison.Ordinal) && sample.Contains("otel_scope_name=\"MoeGpuStats\"", StringComparison.Ordinal));
    }

    private static Dictionary<string, Metric> Collect(MetricReader reader, List<Metric> exported)
    {
        exported.Clear();
        Assert.True(reader.Collect());
        return exported.ToDictionary(m => m.Name);
    }

    private static List<MetricPoint> Points(Metric metric)
    {
        var points = new List<MetricPoint>();
        foreach (ref readonly var point in metric.GetMetricPoints())
        {
            points.Add(point);
        }

        return points;
    }

    private static string? Tag(MetricPoint point, string key)
    {
        foreach (var tag in point.Tags)
        {
            if (tag.Key == key)
            {
                return Convert.ToString(tag.Value, System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return null;
    }

    private static double Value(Metric metric, params (string Key, object Value)[] tags)
    {
        var point = Points(metric).Single(p => p.Tags.Count == tags.Length
            && tags.All(t => Tag(p, t.Key) == Convert.ToString(t.Value, System.Globalization.CultureInfo.InvariantCulture)));
        return metric.MetricType switch
        {
            MetricType.LongSum => point.GetSumLong(),
            MetricType.LongGauge => point.GetGaugeLastValueLong(),
            MetricType.DoubleGauge => point.GetGaugeLastValueDouble(),
            var type => throw new NotSupportedException($"{metric.Name}: {type}"),
        };
    }

    /// <summary>The SDK's warnings and errors about the <c>MoeGpuStats</c> meter (duplicate or conflicting instruments, dropped measurements).</summary>
    private sealed class SdkWarnings : EventListener
    {
        public List<string> Seen { get; } = [];

        protected override void OnEventSourceCreated(EventSource eventSource)
        {
            if (eventSource.Name.StartsWith("OpenTelemetry", StringComparison.Ordinal))
            {
                EnableEvents(eventSource, EventLevel.Warning);
            }
        }

        protected override void OnEventWritten(EventWrittenEventArgs eventData)
        {
            var payload = string.Join(" | ", eventData.Payload ?? []);
            if (payload.Contains(RoutingStatsMetrics.MeterName, StringComparison.Ordinal) || payload.Contains("moegs", StringComparison.Ordinal))
            {
                lock (Seen)
                {
                    Seen.Add($"{eventData.EventSource.Name} #{eventData.EventId}: {payload}");
                }
            }
        }
    }
}
