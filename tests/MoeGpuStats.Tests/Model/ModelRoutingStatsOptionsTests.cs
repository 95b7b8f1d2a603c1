namespace MoeGpuStats.Tests.Model;

/// <summary><see cref="ModelRoutingStatsOptions"/>: the device memory a shape takes, and the window ring's limit.</summary>
public sealed class ModelRoutingStatsOptionsTests
{
    [Fact]
    public void TheWindowRingDominatesTheDeviceMemory()
    {
        var deepSeek = new ModelRoutingStatsOptions { Layers = 58, Experts = 256 };
        Assert.InRange(deepSeek.DeviceStateBytes(), 63_000_000, 65_000_000);
        Assert.True(4L * 1000 * 58 * 256 > deepSeek.DeviceStateBytes() * 0.9);
    }

    /// <summary>Options no model takes have no size: asked for one, they are refused by name, not answered with a negative or wrapped sum.</summary>
    [Theory]
    [InlineData(3, 4, -5, "Window")]
    [InlineData(0, 4, 1000, "Layers")]
    [InlineData(int.MaxValue, int.MaxValue, int.MaxValue, "Layers")]
    [InlineData(1024, 4096, 1000, "Window")]
    public void InvalidOptionsHaveNoDeviceSize(int layers, int experts, int window, string refused)
    {
        var options = new ModelRoutingStatsOptions { Layers = layers, Experts = experts, Window = window };

        Assert.Equal(refused, Assert.Throws<ArgumentOutOfRangeException>(() => options.DeviceStateBytes()).ParamName);
        Assert.Contains(FormattableString.Invariant($"Window = {window}"), options.ToString());
    }

    /// <summary>The managed engine's ring is one .NET array: a larger ring is refused by name, not an OutOfMemoryException on allocation.</summary>
    [Fact]
    public void TheWindowRingHoldsAtMostTheMostElementsOfAnArray()
    {
        Assert.Equal(ModelRoutingStatsOptions.MaxWindowEntries, Array.MaxLength);
        new ModelRoutingStatsOptions { Layers = 1, Experts = 1, Window = Array.MaxLength }.Validate();

        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 1, Experts = 1, Window = Array.MaxLength + 1 }));
        Assert.Equal("Window", error.ParamName);
        Assert.Equal("Window is 2147483592; Window × Layers × Experts is 2,147,483,592, at most 2,147,483,591 (the window ring's counts): give 2,147,483,591 steps or fewer. (Parameter 'Window')", error.Message);
    }
}
