using System.Text.Json;
using System.Text.Json.Nodes;

namespace MoeGpuStats.Tests.Conformance;

/// <summary>Replays every fixture through each engine and checks every dumped value.</summary>
public sealed class ConformanceReplayTests
{
    [Theory]
    [MemberData(nameof(ConformanceFiles.Names), MemberType = typeof(ConformanceFiles))]
    public void ManagedEngineReproducesTheSeed(string name)
    {
        using var stats = new RoutingStats();
        Replay(name, stats, includeSerde: true);
    }

    [Theory]
    [MemberData(nameof(ConformanceFiles.NamesByAccelerator), MemberType = typeof(ConformanceFiles))]
    public void DeviceEngineReproducesTheSeed(string name, string accelerator)
    {
        using var stats = RoutingStats.OnDevice(TestAccelerators.Require(accelerator));
        Replay(name, stats, includeSerde: true);
    }

    [Fact]
    public void FixturesArePresent() => Assert.NotEmpty(ConformanceFiles.Names);

    private static void Replay(string name, RoutingStats stats, bool includeSerde)
    {
        var comparer = new StateComparer($"{name} on {stats.Backend}");
        var states = 0;
        foreach (var line in ConformanceFiles.Lines(name))
        {
            if (line.TryGetPropertyValue("final_serde", out var serde))
            {
                if (includeSerde)
                {
                    CheckSerde(name, stats, serde!.AsObject(), line["exact"]?.AsObject());
                }

                continue;
            }

            if (!line.TryGetPropertyValue("op", out var op))
            {
                continue;
            }

            ConformanceFiles.Apply(stats, op!.AsObject());
            if (line.TryGetPropertyValue("state", out var state))
            {
                Compare(comparer, $"step {line["step"]}", stats, state!.AsObject());
                states++;
            }
        }

        Assert.True(states > 0, $"{name} dumped no state");
        comparer.AssertNone();
    }

    private static void Compare(StateComparer c, string at, RoutingStats stats, JsonObject expected)
    {
        // Queries first, straight from the engine (device reductions on a device engine) ...
        var exact = expected["exact"]?.AsObject();
        c.F32Mean($"{at} utilization_cv", expected["utilization_cv"], exact?["utilization_cv"], stats.UtilizationCv());
        var most = stats.MostUtilizedExpert();
        var least = stats.LeastUtilizedExpert();
        var windows = expected["trend_windows"]!.AsArray();
        var trends = expected["trends"]!.AsArray();
        for (var i = 0; i < windows.Count; i++)
        {
            c.F32($"{at} trend({windows[i]})", trends[i], stats.RecentLoadVarianceTrend(windows[i]!.GetValue<int>()));
        }

        var summary = stats.UtilizationSummary();
        var expectedSummary = expected["summary"]!.AsObject();
        if (expectedSummary.Count != summary.Count)
        {
            Assert.Fail($"{at} summary: expected keys {string.Join(",", expectedSummary.Select(p => p.Key))}, got {string.Join(",", summary.Keys)}");
        }

        foreach (var (key, value) in expectedSummary)
        {
            c.F32Mean($"{at} summary.{key}", value, exact?[key], summary[key]);
        }

        // ... then everything else from one snapshot.
        using var s = stats.Snapshot();
        c.MostUtilized($"{at} most_utilized", expected["most_utilized"], most, s.ExpertUtilization, exact?["most_utilized"]);
        c.LeastUtilized($"{at} least_utilized", expected["least_utilized"], least, s.ExpertUtilization, exact?["least_utilized"]);
        c.Integer($"{at} total_routings", expected["total_routings"], s.TotalRoutings);
        c.Integer($"{at} total_tokens", expected["total_tokens"], s.TotalTokens);
        c.Integer($"{at} tokens_dropped", expected["tokens_dropped"], s.TokensDropped);
        c.F32Means($"{at} expert_utilization", expected["expert_utilization"], exact?["expert_utilization"], s.ExpertUtilization);
        c.F32Mean($"{at} average_load_balance_loss", expected["average_load_balance_loss"], exact?["average_load_balance_loss"], s.AverageLoadBalanceLoss);
        c.F32Mean($"{at} average_router_z_loss", expected["average_router_z_loss"], exact?["average_router_z_loss"], s.AverageRouterZLoss);
        c.F32($"{at} routing_efficiency", expected["routing_efficiency"], s.RoutingEfficiency);
        c.Integers($"{at} expert_token_counts", expected["expert_token_counts"], s.ExpertTokenCounts);
        c.Integer($"{at} load_variance_history_len", expected["load_variance_history_len"], (ulong)s.LoadVarianceHistory.Count);
        if (expected["load_variance_last"] is { } last)
        {
            c.F32($"{at} load_variance_last", last, s.LoadVarianceHistory[^1]);
        }

        var latency = expected["latency"]!.AsObject();
        var l = s.RoutingLatencyStats;
        c.Integer($"{at} latency.total_measurements", latency["total_measurements"], l.TotalMeasurements);
        c.F64($"{at} latency.total_latency_ms", latency["total_latency_ms"], l.TotalLatencyMs);
        c.F64($"{at} latency.min_latency_ms", latency["min_latency_ms"], l.MinLatencyMs);
        c.F64($"{at} latency.max_latency_ms", latency["max_latency_ms"], l.MaxLatencyMs);
        c.Integer($"{at} latency.recent_len", latency["recent_len"], (ulong)l.RecentLatencies.Count);
        c.F64($"{at} latency.average", latency["average"], l.AverageLatency());
        c.F64($"{at} latency.p95", latency["p95"], l.P95Latency());
        c.F64($"{at} latency.p99", latency["p99"], l.P99Latency());
        var ps = latency["percentile_ps"]!.AsArray();
        var percentiles = latency["percentiles"]!.AsArray();
        for (var i = 0; i < ps.Count; i++)
        {
            c.F64($"{at} latency.percentile({ps[i]})", percentiles[i], l.Percentile(ps[i]!.GetValue<double>()));
        }

        var capacity = expected["capacity"]!.AsObject();
        var cap = s.CapacityStats;
        c.F32($"{at} capacity.average_utilization", capacity["average_utilization"], cap.AverageUtilization);
        c.F32($"{at} capacity.peak_utilization", capacity["peak_utilization"], cap.PeakUtilization);
        c.Integer($"{at} capacity.capacity_exceeded_count", capacity["capacity_exceeded_count"], cap.CapacityExceededCount);
        c.Integer($"{at} capacity.total_capacity", capacity["total_capacity"], cap.TotalCapacity);
        c.Integer($"{at} capacity.total_used", capacity["total_used"], cap.TotalUsed);
        c.F32($"{at} capacity.overall_utilization", capacity["overall_utilization"], cap.OverallUtilization());

        var throughput = expected["throughput"]!.AsObject();
        var t = s.GetThroughputStats();
        c.Integer($"{at} throughput.total_tokens", throughput["total_tokens"], t.TotalTokens);
        c.Integer($"{at} throughput.total_routings", throughput["total_routings"], t.TotalRoutings);
        c.F32($"{at} throughput.tokens_per_routing", throughput["tokens_per_routing"], t.TokensPerRouting);
        c.F32($"{at} throughput.routing_efficiency", throughput["routing_efficiency"], t.RoutingEfficiency);
        c.F64($"{at} throughput.average_latency", throughput["average_latency"], t.AverageLatency);
        c.F64($"{at} throughput.tokens_per_second", throughput["tokens_per_second"], t.TokensPerSecond());
        c.F64($"{at} throughput.routings_per_second", throughput["routings_per_second"], t.RoutingsPerSecond());
    }

    /// <summary>
    /// The final line both ways: the seed's JSON reads into equal statistics, and ours reads back equal
    /// (its running means to the exact ones where the line gives them and the seed's are off).
    /// </summary>
    private static void CheckSerde(string name, RoutingStats stats, JsonObject seedJson, JsonObject? exact)
    {
        using var fromSeed = JsonSerializer.Deserialize<RoutingStats>(seedJson.ToJsonString())!;
        AssertSameState($"{name}: seed JSON read", seedJson, fromSeed, exact: null);

        var ours = JsonSerializer.Serialize(stats);
        var oursNode = JsonNode.Parse(ours)!.AsObject();
        // The seed's fields in its order; after them only the f64 sums behind its means, which serde ignores.
        Assert.Equal(seedJson.Select(p => p.Key), oursNode.Select(p => p.Key).Take(seedJson.Count));
        string[] sums = stats.TotalRoutings > 0 ? ["expert_utilization_sums", "load_balance_loss_sum", "router_z_loss_sum"] : [];
        Assert.Equal(sums, oursNode.Select(p => p.Key).Skip(seedJson.Count));
        Assert.Equal(seedJson["routing_latency_stats"]!.AsObject().Select(p => p.Key), oursNode["routing_latency_stats"]!.AsObject().Select(p => p.Key));
        Assert.Equal(seedJson["capacity_stats"]!.AsObject().Select(p => p.Key), oursNode["capacity_stats"]!.AsObject().Select(p => p.Key));
        AssertSameState($"{name}: our JSON against the seed's", seedJson, JsonSerializer.Deserialize<RoutingStats>(ours)!, exact);
    }

    private static void AssertSameState(string context, JsonObject seed, RoutingStats s, JsonObject? exact)
    {
        var c = new StateComparer(context);
        c.Integer("total_routings", seed["total_routings"], s.TotalRoutings);
        c.Integer("total_tokens", seed["total_tokens"], s.TotalTokens);
        c.Integer("tokens_dropped", seed["tokens_dropped"], s.TokensDropped);
        c.F32Means("expert_utilization", seed["expert_utilization"], exact?["expert_utilization"], s.ExpertUtilization);
        c.F32Mean("average_load_balance_loss", seed["average_load_balance_loss"], exact?["average_load_balance_loss"], s.AverageLoadBalanceLoss);
        c.F32Mean("average_router_z_loss", seed["average_router_z_loss"], exact?["average_router_z_loss"], s.AverageRouterZLoss);
        c.F32("routing_efficiency", seed["routing_efficiency"], s.RoutingEfficiency);
        c.Integers("expert_token_counts", seed["expert_token_counts"], s.ExpertTokenCounts);
        c.F32s("load_variance_history", seed["load_variance_history"], s.LoadVarianceHistory);
        var latency = seed["routing_latency_stats"]!.AsObject();
        var l = s.RoutingLatencyStats;
        c.Integer("total_measurements", latency["total_measurements"], l.TotalMeasurements);
        c.F64("total_latency_ms", latency["total_latency_ms"], l.TotalLatencyMs);
        c.F64("min_latency_ms", latency["min_latency_ms"] ?? JsonValue.Create("Infinity"), l.MinLatencyMs);
        c.F64("max_latency_ms", latency["max_latency_ms"], l.MaxLatencyMs);
        var recent = latency["recent_latencies"]!.AsArray();
        Assert.Equal(recent.Count, l.RecentLatencies.Count);
        for (var i = 0; i < recent.Count; i++)
        {
            c.F64($"recent_latencies[{i}]", recent[i], l.RecentLatencies[i]);
        }

        var capacity = seed["capacity_stats"]!.AsObject();
        c.F32("average_utilization", capacity["average_utilization"], s.CapacityStats.AverageUtilization);
        c.F32("peak_utilization", capacity["peak_utilization"], s.CapacityStats.PeakUtilization);
        c.Integer("capacity_exceeded_count", capacity["capacity_exceeded_count"], s.CapacityStats.CapacityExceededCount);
        c.Integer("total_capacity", capacity["total_capacity"], s.CapacityStats.TotalCapacity);
        c.Integer("total_used", capacity["total_used"], s.CapacityStats.TotalUsed);
        c.AssertNone();
    }
}
