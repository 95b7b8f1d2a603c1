using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>The share a model's report gives of a count: never 0 % for a part that is not 0.</summary>
public sealed class ModelCountsTests
{
    [Theory]
    [InlineData(0UL, 0UL, "0 %")]
    [InlineData(0UL, 10UL, "0 %")]
    [InlineData(1UL, 3UL, "33.33 %")]
    [InlineData(1UL, 20_000UL, "0.01 %")]
    [InlineData(1UL, 20_001UL, "< 0.01 %")]
    [InlineData(1UL, 259_840UL, "< 0.01 %")]
    [InlineData(10UL, 10UL, "100 %")]
    public void APartThatIsNotZeroIsNeverShownAsZeroPercent(ulong part, ulong whole, string expected) =>
        Assert.Equal(expected, ModelCounts.Percent(part, whole));

    /// <summary>
    /// Sums over layers pass 2^64 − 1 where each layer holds up to 2^63 − 1: three such layers route
    /// 27,670,116,110,564,327,421 slots, which 64 bits wrap to 9,223,372,036,854,775,805.
    /// </summary>
    [Fact]
    public void SumsOverLayersDoNotWrap()
    {
        const ulong most = long.MaxValue;
        var counts = new ModelCounts([new(1, most, most, most / 2), new(1, most, 0, most / 2), new(1, most, 0, most / 2)], Capacity: 4, WindowHoldsAll: true, MergedParts: 1);
        Assert.Equal(3 * (UInt128)most, counts.RoutedSlots);
        Assert.Equal(3 * (UInt128)(most / 2), counts.SlotsDropped);
        Assert.Equal("50 %", ModelCounts.Percent(counts.SlotsDropped, counts.RoutedSlots));
        Assert.StartsWith("warning: 9,223,372,036,854,775,807 ids (25 % of the ids other than -1)", counts.Warning(8));
    }
}
