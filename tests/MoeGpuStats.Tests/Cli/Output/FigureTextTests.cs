using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary><see cref="FigureText"/>: a figure in its fixed format below 10^15 in magnitude, in scientific notation with four significant digits from it.</summary>
[UseCulture("sv-SE")]
public sealed class FigureTextTests
{
    [Theory]
    [InlineData(999_999_999_999_999.0, "#,0", "999,999,999,999,999")]
    [InlineData(-999_999_999_999_999.0, "#,0", "-999,999,999,999,999")]
    [InlineData(1e15, "#,0", "1e+15")]
    [InlineData(-1e15, "#,0", "-1e+15")]
    [InlineData(1.23456e20, "0.00", "1.235e+20")]
    [InlineData(-2.5e30, "0.0000", "-2.5e+30")]
    [InlineData(double.MaxValue, "0.00", "1.798e+308")]
    [InlineData(12.345, "0.00", "12.35")]
    public void AFigureIsFixedBelowTheBoundAndScientificFromIt(double value, string format, string expected) =>
        Assert.Equal(expected, FigureText.Fixed(value, format));
}
