namespace MoeGpuStats.Tests.Model;

/// <summary><see cref="ModelRoutingStatsOptions"/>: the device memory a shape takes.</summary>
public sealed class ModelRoutingStatsOptionsTests
{
    [Fact]
    public void TheWindowRingDominatesTheDeviceMemory()
    {
        var deepSeek = new ModelRoutingStatsOptions { Layers = 58, Experts = 256 };
        Assert.InRange(deepSeek.DeviceStateBytes, 63_000_000, 65_000_000);
        Assert.True(4L * 1000 * 58 * 256 > deepSeek.DeviceStateBytes * 0.9);
    }
}
