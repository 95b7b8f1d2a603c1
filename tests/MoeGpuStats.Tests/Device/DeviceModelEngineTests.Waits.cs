using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// What a read of a device model costs the host: each copy between host and device waits for the stream
/// (the producer's queued work first). A summary, a window load, a placement's summary and each read of
/// a layer are staged on the device and copied back once; a snapshot so, and its window ring once more,
/// whatever the layers.
/// </summary>
public sealed partial class DeviceModelEngineTests
{
    [Fact]
    public void ASummaryOrAWindowLoadIsOneWaitAndAPlacementIsCopiedOnlyWhenItChanges()
    {
        var options = new ModelRoutingStatsOptions { Layers = 5, Experts = 8, Window = 4 };
        var engine = new DeviceModelEngine(TestAccelerators.Require("cpu"), options);
        using var device = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(options);
        var random = new Random(11);
        for (var step = 0; step < 3; step++)
        {
            var ids = Enumerable.Range(0, 5 * 6 * 2).Select(_ => random.Next(-1, 9)).ToArray();
            device.RecordStep(ids, 6, 2);
            managed.RecordStep(ids, 6, 2);
        }

        int[] ranks = [0, 0, 1, 1, 2, 2, 3, 3], other = [3, 2, 1, 0, 3, 2, 1, 0];
        var reads = new (string Name, int Waits, Func<ModelRoutingStats, object> Read)[]
        {
            ("Summary()", 1, m => m.Summary()),
            ("Summary(2)", 1, m => m.Summary(recentSteps: 2)),
            ("Summary(4), more steps than held", 1, m => m.Summary(recentSteps: 4)),
            ("WindowLoad()", 1, m => m.WindowLoad()),
            ("WindowLoad(1)", 1, m => m.WindowLoad(recentSteps: 1)),
            ("Summary(ranks), a new placement", 2, m => m.Summary(ranks)),
            ("Summary(ranks), the same placement", 1, m => m.Summary(ranks)),
            ("Summary(2, ranks)", 1, m => m.Summary(2, ranks)),
            ("Summary(other), another placement", 2, m => m.Summary(other)),

            // A layer's seed reads: its block (the expert count) staged with what the read copies.
            ("Layer(1).ExpertTokenCounts", 1, m => m.Layer(1).ExpertTokenCounts),
            ("Layer(1).ExpertUtilization", 1, m => m.Layer(1).ExpertUtilization),
            ("Layer(1).DecayedExpertUtilization", 1, m => m.Layer(1).DecayedExpertUtilization),
            ("Layer(1).LoadVarianceHistory", 1, m => m.Layer(1).LoadVarianceHistory),
            ("Layer(1).TotalRoutings", 1, m => m.Layer(1).TotalRoutings),
            ("Layer(1).UtilizationCv()", 1, m => m.Layer(1).UtilizationCv()),
            ("Layer(1).RecentLoadVarianceTrend(2)", 1, m => m.Layer(1).RecentLoadVarianceTrend(2)),
            ("Layer(1).Snapshot(), staged", 1, m => m.Layer(1).Snapshot().ExpertTokenCounts),

            // The state without its ring, what JSON saves: staged and copied back once.
            ("JSON", 1, m => Json(m)),

            // A read begun without waiting: staged as a summary; where ILGPU gives no event to poll (here), copied at its begin.
            ("BeginRead()", 1, m => PendingResults(m.BeginRead())),
            ("BeginRead(2, other), the last placement", 1, m => PendingResults(m.BeginRead(2, other))),
            ("BeginRead(ranks), a new placement", 2, m => PendingResults(m.BeginRead(expertRanks: ranks))),
            ("BeginRead(other), another placement", 2, m => PendingResults(m.BeginRead(expertRanks: other))),
        };
        foreach (var (name, waits, read) in reads)
        {
            var before = engine.ReadWaits;
            var value = read(device);
            Assert.True(waits == engine.ReadWaits - before, $"{name}: {engine.ReadWaits - before} waits, expected {waits}");
            Assert.Equal(Json(read(managed)), Json(value));
        }

        // A reset clears the statistics, not the placement on the device (an input of reads): the next summary reads it as it is.
        device.Reset();
        managed.Reset();
        var step2 = Enumerable.Range(0, 5 * 6 * 2).Select(_ => random.Next(0, 8)).ToArray();
        device.RecordStep(step2, 6, 2);
        managed.RecordStep(step2, 6, 2);
        var beforeReset = engine.ReadWaits;
        Assert.Equal(Json(managed.Summary(other)), Json(device.Summary(other)));
        Assert.Equal(1, engine.ReadWaits - beforeReset);
        Assert.Equal(Json(managed.Summary(ranks)), Json(device.Summary(ranks)));
        Assert.Equal(3, engine.ReadWaits - beforeReset);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(12)]
    public void ASnapshotIsTwoCopiesBackWhateverTheLayers(int layers)
    {
        var options = new ModelRoutingStatsOptions { Layers = layers, Experts = 8, Window = 4, UtilizationDecay = 0.5f, ExpertCapacity = 3 };
        var engine = new DeviceModelEngine(TestAccelerators.Require("cpu"), options);
        using var device = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(options);
        var random = new Random(layers);
        for (var step = 0; step < 6; step++)
        {
            var ids = Enumerable.Range(0, layers * 5 * 2).Select(_ => random.Next(-1, 9)).ToArray();
            device.RecordStep(ids, 5, 2, loadBalanceLosses: [.. Enumerable.Range(0, layers).Select(l => 0.1f * l)]);
            managed.RecordStep(ids, 5, 2, loadBalanceLosses: [.. Enumerable.Range(0, layers).Select(l => 0.1f * l)]);
        }

        var before = engine.ReadWaits;
        using var snapshot = device.Snapshot();

        // The layers' blocks, utilization, sums, decayed utilization, counts, variance histories, control and window load staged together; the ring's own copy.
        Assert.Equal(2, engine.ReadWaits - before);
        using var managedSnapshot = managed.Snapshot();
        Assert.Equal(Json(managedSnapshot), Json(snapshot));
        for (var l = 0; l < layers; l++)
        {
            Assert.Equal(ModelSteps.Fingerprint(managed.Layer(l)), ModelSteps.Fingerprint(snapshot.Layer(l)));
        }

        Assert.Equal(managed.WindowLoad(recentSteps: 2), snapshot.WindowLoad(recentSteps: 2));
    }

    /// <summary>
    /// A snapshot is two copies (the staged state, then the ring's rows that hold steps), one before the first step,
    /// when no row holds one; before the first step a layer has no expert yet, and without a decay no decayed
    /// utilization: the snapshot holds neither.
    /// </summary>
    [Theory]
    [InlineData(0, 0.5f)]
    [InlineData(0, null)]
    [InlineData(2, null)]
    [InlineData(5, 0.5f)]
    public void ASnapshotIsTwoCopiesAndHoldsOnlyTheArraysThatHoldValues(int steps, float? decay)
    {
        var options = new ModelRoutingStatsOptions { Layers = 3, Experts = 8, Window = 4, UtilizationDecay = decay };
        var engine = new DeviceModelEngine(TestAccelerators.Require("cpu"), options);
        using var device = new ModelRoutingStats(engine);
        using var managed = new ModelRoutingStats(options);
        for (var step = 0; step < steps; step++)
        {
            int[] ids = [.. Enumerable.Range(0, 3 * 4).Select(i => (i * 5 + step) % 8)];
            device.RecordStep(ids, 4, 1);
            managed.RecordStep(ids, 4, 1);
        }

        var before = engine.ReadWaits;
        using var snapshot = device.Snapshot();

        Assert.Equal(steps == 0 ? 1 : 2, engine.ReadWaits - before);
        using var managedSnapshot = managed.Snapshot();
        Assert.Equal(Json(managedSnapshot), Json(snapshot));
        Assert.Equal(steps == 0 ? 0 : 8, snapshot.Layer(2).ExpertTokenCounts.Count);
        Assert.Equal(decay is null || steps == 0 ? 0 : 8, snapshot.Layer(2).DecayedExpertUtilization.Count);
        Assert.Equal(managed.WindowLoad(recentSteps: 1), snapshot.WindowLoad(recentSteps: 1));
    }

    /// <summary>A pending read's results, taken (no further copy) and the read disposed.</summary>
    private static object PendingResults(PendingModelRead read)
    {
        using (read)
        {
            return new { read.Summary, read.WindowLoad };
        }
    }

    private static string Json(object value) => System.Text.Json.JsonSerializer.Serialize(value);
}
