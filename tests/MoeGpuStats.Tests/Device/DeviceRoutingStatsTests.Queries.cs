using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// The device engine's own queries (<see cref="DeviceRoutingStats.MostUtilizedExpert"/> and the rest, which the facade
/// does not call: it asks for the whole query at once) and the most experts it holds: each as the managed engine fed
/// the same records.
/// </summary>
public sealed partial class DeviceRoutingStatsTests
{
    /// <summary>None before the first record and after a reset; between them, the managed engine's experts and figures.</summary>
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void TheEnginesOwnQueriesEqualTheManagedEngines(string accelerator)
    {
        var options = new RoutingStatsOptions { Experts = 6 };
        using var device = new DeviceRoutingStats(TestAccelerators.Require(accelerator), options);
        using var managed = new RoutingStats(options);
        Assert.Null(device.MostUtilizedExpert());
        Assert.Null(device.LeastUtilizedExpert());

        var random = new Random(6);
        for (var r = 0; r < 9; r++)
        {
            // Skewed: expert 0 often, expert 5 never but in the last records, so the most and least utilized differ.
            int[] ids = [.. Enumerable.Range(0, 10 * 2).Select(_ => random.Next(4) == 0 ? 0 : random.Next(1, r < 6 ? 5 : 6))];
            device.RecordRouting(ids, 10, 2);
            managed.RecordRouting(ids, 10, 2);
        }

        Assert.Equal(managed.MostUtilizedExpert(), device.MostUtilizedExpert());
        Assert.Equal(managed.LeastUtilizedExpert(), device.LeastUtilizedExpert());
        Assert.NotEqual(managed.MostUtilizedExpert()!.Value.Utilization, managed.LeastUtilizedExpert()!.Value.Utilization);
        Assert.Equal(BitConverter.SingleToInt32Bits(managed.UtilizationCv()), BitConverter.SingleToInt32Bits(device.UtilizationCv()));
        foreach (var window in new[] { 0, 1, 2, 5, 100 })
        {
            Assert.Equal(BitConverter.SingleToInt32Bits(managed.RecentLoadVarianceTrend(window)), BitConverter.SingleToInt32Bits(device.RecentLoadVarianceTrend(window)));
        }

        device.Reset();
        managed.Reset();
        Assert.Null(device.MostUtilizedExpert());
        Assert.Null(device.LeastUtilizedExpert());
    }

    /// <summary>
    /// As many experts as the device holds (4,096), with a decay: ids and a decision of that many experts are recorded,
    /// and the whole state (every per-expert array, decayed included) read back at once, as the managed engine's.
    /// </summary>
    [Fact]
    public void AsManyExpertsAsTheDeviceHoldsAreRecordedAndReadBackWhole()
    {
        const int experts = RoutingStatsOptions.MaxDeviceExperts;
        var options = new RoutingStatsOptions { Experts = experts, UtilizationDecay = 0.5f };
        using var device = new DeviceRoutingStats(TestAccelerators.Require("cpu"), options);
        using var managed = new RoutingStats(options);
        var random = new Random(experts);
        int[] ids = [.. Enumerable.Range(0, 64 * 8).Select(_ => random.Next(experts))];
        var decision = new RoutingDecision { ExpertCapacities = [.. Enumerable.Range(0, experts).Select(e => e % 3)], TotalTokens = experts };
        device.RecordRouting(ids, 64, 8);
        managed.RecordRouting(ids, 64, 8);
        device.RecordRouting(decision);
        managed.RecordRouting(decision);

        using var snapshot = device.Snapshot();
        Assert.Equal(experts, snapshot.DecayedExpertUtilization.Count);
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(managed), System.Text.Json.JsonSerializer.Serialize(snapshot));
        Assert.Equal(managed.DecayedExpertUtilization, snapshot.DecayedExpertUtilization);
    }
}
