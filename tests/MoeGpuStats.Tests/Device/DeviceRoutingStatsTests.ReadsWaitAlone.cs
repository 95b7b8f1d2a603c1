using MoeGpuStats.Device;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// A read of single-layer device statistics is one copy back (its block staged with what it reads), made with
/// the lock released: a record on another thread meanwhile goes ahead at once and lands after the reading.
/// </summary>
public sealed partial class DeviceRoutingStatsTests
{
    private static readonly string[] SingleLayerReadNames =
        ["ExpertTokenCounts", "ExpertUtilization", "DecayedExpertUtilization", "LoadVarianceHistory", "TotalTokens", "Capacity", "UtilizationCv()",
         "MostUtilizedExpert()", "RecentLoadVarianceTrend(3)", "UtilizationSummary()", "Snapshot()"];

    /// <summary>Each read on each accelerator kind: on a GPU the copy back runs on the reading thread while another launches on the same stream.</summary>
    public static TheoryData<string, string> SingleLayerReads => TestAccelerators.KindsBy(SingleLayerReadNames);

    [Theory]
    [MemberData(nameof(SingleLayerReads))]
    public async Task ARecordMadeWhileAReadWaitsForItsCopyDoesNotWaitForTheRead(string kind, string name)
    {
        var options = new RoutingStatsOptions { Experts = 9, ExpertCapacity = 4, UtilizationDecay = 0.5f };
        var device = new DeviceRoutingStats(TestAccelerators.Require(kind), options);
        using var stats = new RoutingStats(new DeviceRoutingEngine(device));
        var managed = new RoutingStats(options);
        var random = new Random(5);
        for (var r = 0; r < 4; r++)
        {
            int[] ids = [.. Enumerable.Range(0, 12 * 2).Select(_ => random.Next(-1, 10))];
            stats.RecordRouting(ids, 12, 2);
            managed.RecordRouting(ids, 12, 2);
        }

        var read = SingleLayerRead(name);
        var expected = Json(read(managed));
        var before = device.ReadWaits;
        Assert.Equal(expected, Json(read(stats)));
        Assert.True(device.ReadWaits - before == 1, $"{name}: {device.ReadWaits - before} copies back, expected 1");

        var step = new int[12 * 2];
        using var hold = new HeldCopy(device.Reader);
        var reading = Task.Run(() => read(stats), HeldCopy.Cancellation);
        hold.WaitUntilHeld();
        var recording = Task.Run(() => stats.RecordRouting(step, 12, 2), HeldCopy.Cancellation);
        var recordedMeanwhile = await HeldCopy.Within(recording, Patience.GoAhead);
        hold.Release();

        Assert.True(recordedMeanwhile, $"{name}: a record made while the read waited for its copy waited for the read");
        Assert.Equal(expected, Json(await reading));
        managed.RecordRouting(step, 12, 2);
        Assert.Equal(Json(read(managed)), Json(read(stats)));
    }

    private static Func<RoutingStats, object?> SingleLayerRead(string name) => name switch
    {
        "ExpertTokenCounts" => s => s.ExpertTokenCounts,
        "ExpertUtilization" => s => s.ExpertUtilization,
        "DecayedExpertUtilization" => s => s.DecayedExpertUtilization,
        "LoadVarianceHistory" => s => s.LoadVarianceHistory,
        "TotalTokens" => s => s.TotalTokens,
        "Capacity" => s => s.CapacityStats,
        "UtilizationCv()" => s => s.UtilizationCv(),
        "MostUtilizedExpert()" => s => s.MostUtilizedExpert()?.ToString(),
        "RecentLoadVarianceTrend(3)" => s => s.RecentLoadVarianceTrend(3),
        "UtilizationSummary()" => s => s.UtilizationSummary(),
        "Snapshot()" => s => ModelSteps.Fingerprint(s.Snapshot()),
        _ => throw new ArgumentOutOfRangeException(nameof(name), name, null),
    };

    private static string Json(object? value) => System.Text.Json.JsonSerializer.Serialize(value);
}
