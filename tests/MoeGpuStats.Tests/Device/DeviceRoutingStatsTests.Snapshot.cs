using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>A snapshot's whole state is staged on the device and copied back at once: one wait, the managed engine's figures.</summary>
public sealed partial class DeviceRoutingStatsTests
{
    [Theory]
    [InlineData(0, null)]
    [InlineData(0, 0.5f)]
    [InlineData(7, null)]
    [InlineData(7, 0.5f)]
    public void ASnapshotIsOneCopyOfTheWholeState(int records, float? decay)
    {
        var options = new RoutingStatsOptions { Experts = 9, ExpertCapacity = 4, UtilizationDecay = decay };
        using var device = new DeviceRoutingStats(TestAccelerators.Require("cpu"), options);
        var managed = new RoutingStats(options);
        var random = new Random(records);
        for (var r = 0; r < records; r++)
        {
            int[] ids = [.. Enumerable.Range(0, 12 * 2).Select(_ => random.Next(-1, 10))];
            device.RecordRouting(ids, 12, 2, loadBalanceLoss: 0.1f * r);
            managed.RecordRouting(ids, 12, 2, loadBalanceLoss: 0.1f * r);
        }

        var before = device.ReadWaits;
        using var snapshot = device.Snapshot();

        Assert.Equal(1, device.ReadWaits - before);
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(managed), System.Text.Json.JsonSerializer.Serialize(snapshot));
        Assert.Equal(managed.LoadVarianceHistory, snapshot.LoadVarianceHistory);
        Assert.Equal(managed.DecayedExpertUtilization, snapshot.DecayedExpertUtilization);
    }
}
