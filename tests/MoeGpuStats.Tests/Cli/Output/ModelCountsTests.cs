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
}
