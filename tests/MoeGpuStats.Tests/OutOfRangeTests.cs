using Microsoft.Extensions.Logging.Abstractions;
using MoeGpuStats.Device;
using MoeGpuStats.Interop;
using MoeGpuStats.Monitoring;
using MoeGpuStats.Placement;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Tests;

/// <summary>
/// Every out-of-range argument the library refuses is told on one line that names the argument, the value
/// given and what is allowed (.NET's own form adds "Actual value was N." on a second line).
/// </summary>
public sealed class OutOfRangeTests
{
    private static readonly long[,] Loads = { { 4, 3, 2, 1 } };

    /// <summary>Each public refusal of an out-of-range argument, and how its message starts.</summary>
    private static readonly Dictionary<string, (Action Refused, string Starts)> Refusals = new()
    {
        ["RoutingStatsOptions.Experts"] = (() => _ = new RoutingStats(new RoutingStatsOptions { Experts = 0 }), "Experts is 0; give 1 to 1,048,576."),
        ["RoutingStatsOptions.ExpertCapacity"] = (() => _ = new RoutingStats(new RoutingStatsOptions { ExpertCapacity = 0 }), "ExpertCapacity is 0; give at least 1 slot"),
        ["RoutingStatsOptions.UtilizationDecay"] = (() => _ = new RoutingStats(new RoutingStatsOptions { UtilizationDecay = float.NaN }), "UtilizationDecay is NaN; give a decay in [0, 1)"),
        ["ModelRoutingStatsOptions.Layers"] = (() => _ = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 0, Experts = 4 }), "Layers is 0; give 1 to 1,024."),
        ["ModelRoutingStatsOptions.Experts"] = (() => _ = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 1, Experts = 4097 }), "Experts is 4097; give 1 to 4,096."),
        ["ModelRoutingStatsOptions.Window"] = (() => _ = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 1, Experts = 4, Window = -3 }), "Window is -3; give at least 1 step."),
        ["ModelRoutingStatsOptions.Window ring"] = (() => _ = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 1024, Experts = 4096, Window = 512 }), "Window is 512; Window × Layers × Experts is 2,147,483,648, at most 2,147,483,591 (the window ring's counts): give 511 steps or fewer."),
        ["RoutingStats.RecordRouting topK"] = (() => Use(new RoutingStats(), s => s.RecordRouting([1, 2], tokens: 2, topK: 0)), "topK is 0; it must be at least 1."),
        ["RoutingStats.RecordRouting tokens"] = (() => Use(new RoutingStats(), s => s.RecordRouting([1, 2], tokens: -1, topK: 1)), "tokens is -1; it cannot be negative."),
        ["RoutingStats.RecentLoadVarianceTrend"] = (() => Use(new RoutingStats(), s => s.RecentLoadVarianceTrend(-2)), "window is -2; it cannot be negative."),
        ["RoutingStats.RecordRoutingLatency"] = (() => Use(new RoutingStats(), s => s.RecordRoutingLatency(TimeSpan.FromMilliseconds(-1.5))), "latency is -1.5 ms; it cannot be negative."),
        ["RoutingStats.ExpertUtilization[index]"] = (() => Use(Recorded(), s => _ = s.ExpertUtilization[4]), "index is 4; give 0 to 3 (4 experts)."),
        ["RoutingStats.LoadVarianceHistory[index]"] = (() => Use(Recorded(), s => _ = s.LoadVarianceHistory[-1]), "index is -1; give 0 to 0 (1 batch)."),
        ["RoutingStats.ExpertTokenCounts[index]"] = (() => Use(Recorded(), s => _ = s.ExpertTokenCounts[4]), "index is 4; give 0 to 3 (4 experts)."),
        ["RoutingStats.ExpertTokenCounts[index] before a record"] = (() => Use(new RoutingStats(new RoutingStatsOptions { Experts = 8 }), s => _ = s.ExpertTokenCounts[0]), "index is 0; there is no expert yet."),
        ["RoutingStats.ExpertUtilization[index] before a record"] = (() => Use(new RoutingStats(new RoutingStatsOptions { Experts = 8 }), s => _ = s.ExpertUtilization[0]), "index is 0; there is no expert yet."),
        ["RoutingStats.DecayedExpertUtilization[index]"] = (() => Use(Recorded(), s => _ = s.DecayedExpertUtilization[0]), "index is 0; there is none without RoutingStatsOptions.UtilizationDecay."),
        ["RoutingDecision.totalTokens"] = (() => _ = new RoutingDecision([], [], totalTokens: -4, 0f, 0f, 0f), "totalTokens is -4; it cannot be negative."),
        ["LatencyStats.Percentile"] = (() => new LatencyStats().Percentile(100.5), "p is 100.5; a percentile lies in [0, 100]."),
        ["CapacityStats.slotsPerExpert"] = (() => _ = new CapacityStats(0), "slotsPerExpert is 0; give at least 1 slot per expert."),
        ["PerformanceMonitor.reportInterval"] = (() => _ = new PerformanceMonitor(TimeSpan.FromSeconds(-2), NullLogger.Instance), "reportInterval is -2000 ms; it cannot be negative."),
        ["ModelRoutingStats.RecordStep layerStride"] = (() => Use(Model(), m => m.RecordStep(new int[8], tokens: 2, topK: 2, layerStride: -1)), "layerStride is -1; it cannot be negative (0 packs the layers)."),
        ["ModelRoutingStats.RecordStep tokenStride"] = (() => Use(Model(), m => m.RecordStep(new int[8], tokens: 2, topK: 2, tokenStride: -1)), "tokenStride is -1; it cannot be negative"),
        ["ModelRoutingStats.Layer"] = (() => Use(Model(), m => m.Layer(2)), "layer is 2; this model has layers 0 to 1."),
        ["ModelRoutingStats.Summary recentSteps"] = (() => Use(Model(), m => m.Summary(0)), "recentSteps is 0; give 1 to 1,000, the model's window."),
        ["ModelRoutingStatsMetrics.topExperts"] = (() => Use(Model(), m => new ModelRoutingStatsMetrics(m, topExperts: 5)), "topExperts is 5; give 0 to 4, the model's experts."),
        ["ModelRoutingStatsMetrics.epSize"] = (() => Use(Model(), m => new ModelRoutingStatsMetrics(m, epSize: 3)), "epSize is 3; give a divisor of the model's 4 experts"),
        ["ModelRoutingStatsMetrics.refreshInterval"] = (() => Use(Model(), m => new ModelRoutingStatsMetrics(m, refreshInterval: TimeSpan.FromMilliseconds(-1))), "refreshInterval is -1 ms; it cannot be negative."),
        ["ModelRoutingStatsMetrics.SeriesCount"] = (() => ModelRoutingStatsMetrics.SeriesCount(-1, 4, 0, expertSeries: false), "layers is -1; give 1 to 1,024, as a model takes."),
        ["RoutingStatsMetrics.refreshInterval"] = (() => Use(new RoutingStats(), s => new RoutingStatsMetrics(s, refreshInterval: TimeSpan.FromTicks(-1))), "refreshInterval is -0.0001 ms; it cannot be negative."),
        ["ExpertPlacement.IdentityBalancedness gpus"] = (() => ExpertPlacement.IdentityBalancedness(Loads, 0), "gpus is 0; it must be at least 1."),
        ["ExpertPlacement.Balancedness gpus"] = (() => ExpertPlacement.Balancedness(Loads, [[0, 1, 2, 3]], 0), "gpus is 0; it must be at least 1."),
        ["ExpertPlacement.Rebalance replicas"] = (() => ExpertPlacement.Rebalance(Loads, 0, 2, 1, 2), "replicas is 0; it must be at least 1."),
        ["ExpertPlacement.Rebalance groups"] = (() => ExpertPlacement.Rebalance(Loads, 4, 0, 1, 2), "groups is 0; it must be at least 1 (1 when the model has no groups)."),
        ["ExpertPlacement.Rebalance nodes"] = (() => ExpertPlacement.Rebalance(Loads, 4, 2, -1, 2), "nodes is -1; it must be at least 1."),
        ["ExpertPlacement.Rebalance gpus"] = (() => ExpertPlacement.Rebalance(Loads, 4, 2, 1, 0), "gpus is 0; it must be at least 1."),
        ["PlacementPlan.ReplicaCounts layer"] = (() => ExpertPlacement.Rebalance(Loads, 4, 1, 1, 2).ReplicaCounts(1), "layer is 1; give 0 to 0 (1 layer)."),
        ["PlacementPlan.LogicalToPhysical expert"] = (() => ExpertPlacement.Rebalance(Loads, 4, 1, 1, 2).LogicalToPhysical(0, -1), "expert is -1; give 0 to 3 (4 logical experts)."),
        ["DeviceRoutingStats experts"] = (() => _ = new DeviceRoutingStats(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = 5000 }), "Experts is 5000; the device engine holds 1 to 4,096."),
        ["DeviceRoutingStats.RecentLoadVarianceTrend"] = (() => Use(new DeviceRoutingStats(TestAccelerators.Require("cpu")), s => s.RecentLoadVarianceTrend(-1)), "window is -1; it cannot be negative."),
        ["ForeignMemory.Wrap length"] = (() => ForeignMemory.Wrap<int>(TestAccelerators.Require("cpu"), 64, -1), "length is -1; it cannot be negative."),
    };

    public static TheoryData<string> Cases => [.. Refusals.Keys];

    [Theory]
    [MemberData(nameof(Cases))]
    public void IsOneLineNamingTheArgumentAndItsValue(string refusal)
    {
        var (refused, starts) = Refusals[refusal];
        var error = Assert.Throws<ArgumentOutOfRangeException>(refused);
        Assert.StartsWith(starts, error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.EndsWith($" (Parameter '{error.ParamName}')", error.Message);
        Assert.StartsWith($"{error.ParamName} is ", starts);
        Assert.Null(error.ActualValue);
    }

    /// <summary>Under a culture that writes 1.048.576 and 100,5, every refusal (those needing no accelerator) reads as in any other.</summary>
    [Fact]
    public void RefusalsAreWrittenInvariantlyInAnyCulture()
    {
        var previous = Thread.CurrentThread.CurrentCulture;
        Thread.CurrentThread.CurrentCulture = new System.Globalization.CultureInfo("de-DE");
        try
        {
            Assert.Equal("p is 100.5; a percentile lies in [0, 100]. (Parameter 'p')", OutOfRange.Error("p", 100.5, "a percentile lies in [0, 100].").Message);
            Assert.Equal("latency is -1.5 ms; it cannot be negative. (Parameter 'latency')", Assert.Throws<ArgumentOutOfRangeException>(() => OutOfRange.ThrowIfNegative(TimeSpan.FromMilliseconds(-1.5), "latency")).Message);
            foreach (var refusal in Refusals.Where(r => !r.Key.StartsWith("Device", StringComparison.Ordinal) && !r.Key.StartsWith("ForeignMemory", StringComparison.Ordinal)))
            {
                Assert.StartsWith(refusal.Value.Starts, Assert.Throws<ArgumentOutOfRangeException>(refusal.Value.Refused).Message);
            }

            Assert.StartsWith("index is 1500; give 0 to 1,499 (1,500 values).", Assert.Throws<ArgumentOutOfRangeException>(() => OutOfRange.ThrowIfNotIndex(1500, 1500, "value", "index")).Message);
        }
        finally
        {
            Thread.CurrentThread.CurrentCulture = previous;
        }
    }

    [Theory]
    [InlineData(0, 0, "index is 0; there is no value yet.")]
    [InlineData(-1, 3, "index is -1; give 0 to 2 (3 values).")]
    [InlineData(3, 3, "index is 3; give 0 to 2 (3 values).")]
    [InlineData(int.MinValue, 3, "index is -2147483648; give 0 to 2 (3 values).")]
    public void NotAnIndexNamesTheRange(int index, int count, string message)
    {
        Assert.StartsWith(message, Assert.Throws<ArgumentOutOfRangeException>(() => OutOfRange.ThrowIfNotIndex(index, count, "value")).Message);
    }

    /// <summary>A count in a range is spelled as a person writes it: a noun ending in a hissing sound takes es ("94 batches").</summary>
    [Fact]
    public void ACountOfBatchesIsSpelledAsAPersonWritesIt()
    {
        Assert.StartsWith("index is 94; give 0 to 93 (94 batches).", Assert.Throws<ArgumentOutOfRangeException>(() => OutOfRange.ThrowIfNotIndex(94, 94, "batch", "index")).Message);
        Assert.Equal(["1 batch", "2 experts", "3 layers"], [Plural.Of(1, "batch"), Plural.Of(2, "expert"), Plural.Of(3, "layer")]);
    }

    [Theory]
    [InlineData(0, 1)]
    [InlineData(2, 3)]
    public void AnIndexPasses(int index, int count) => OutOfRange.ThrowIfNotIndex(index, count, "value");

    private static RoutingStats Recorded()
    {
        var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);
        return stats;
    }

    /// <summary>Calls <paramref name="call"/> on <paramref name="stats"/>, then disposes them (a refusal throws through).</summary>
    private static void Use<T>(T stats, Action<T> call)
        where T : IDisposable
    {
        using (stats)
        {
            call(stats);
        }
    }

    private static ModelRoutingStats Model() => new(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
}
