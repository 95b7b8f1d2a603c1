using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// A disposed engine on a stream of the caller's, which outlives it, refuses every record and read by its own
/// disposal: no stream or accelerator gone says so for it, and work enqueued there would touch freed memory.
/// </summary>
public sealed partial class DeviceRoutingStatsTests
{
    [Fact]
    public void ADisposedEngineOnTheCallersStreamRefusesWork()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var stream = accelerator.CreateStream();
        var stats = new DeviceRoutingStats(accelerator, new RoutingStatsOptions { Experts = 2 }, stream);
        stats.RecordRouting([0, 1], tokens: 2, topK: 1);
        stats.Dispose();

        Assert.Throws<ObjectDisposedException>(() => stats.Snapshot());
        Assert.Throws<ObjectDisposedException>(() => stats.UtilizationCv());
        Assert.Throws<ObjectDisposedException>(() => stats.MostUtilizedExpert());
        Assert.Throws<ObjectDisposedException>(stats.Reset);
        Assert.Throws<ObjectDisposedException>(() => stats.RecordRouting([0, 1], tokens: 2, topK: 1));
        Assert.Throws<ObjectDisposedException>(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1], TotalTokens = 2 }));
        stats.Dispose();
    }
}
