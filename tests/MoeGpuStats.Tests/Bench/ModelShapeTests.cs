using MoeGpuStats.Bench;

namespace MoeGpuStats.Tests.Bench;

/// <summary>
/// The benchmarks' <c>LxExkxT</c> shapes: a shape a model cannot take, or whose step's ids do not fit one array, is
/// refused as the shape the user wrote before anything is allocated.
/// </summary>
public sealed class ModelShapeTests
{
    [Fact]
    public void AShapeParsesToItsFourNumbersAndWritesBackTheSame()
    {
        var shapes = ModelShape.ParseList("58x256x8x256, 32x8x2x1");
        Assert.Equal([new ModelShape(58, 256, 8, 256), new ModelShape(32, 8, 2, 1)], shapes);
        Assert.Equal("58x256x8x256", shapes[0].ToString());
        Assert.Equal(58L * 256 * 8, shapes[0].StepIds);
    }

    [Theory]
    [InlineData("58x256x8")]
    [InlineData("58x256x8x1x1")]
    [InlineData("58x256x8xa")]
    [InlineData("58x0x8x1")]
    [InlineData("-58x256x8x1")]
    [InlineData("58x 256x8x1")]
    [InlineData("58x256x8x99999999999")]
    public void AShapeThatIsNotFourPositiveWholeNumbersIsRefused(string text)
    {
        var refusal = Assert.Throws<FormatException>(() => ModelShape.Parse(text));
        Assert.Equal($"A model shape is LxExkxT with positive whole numbers (58x256x8x256); got '{text}'.", refusal.Message);
    }

    [Theory]
    [InlineData("1025x8x2x1")]
    [InlineData("58x4097x8x1")]
    [InlineData("1024x4096x1x1")]
    [InlineData("1x8x65536x65536")]
    [InlineData("1024x8x65536x65536")]
    [InlineData("2x8x1x2147483591")]
    public void AShapeNoModelTakesOrWhoseStepDoesNotFitAnArrayIsRefusedWithTheLimits(string text)
    {
        var refusal = Assert.Throws<FormatException>(() => ModelShape.Parse(text));
        Assert.Equal(
            $"Model shape '{text}' is out of range: L is 1 to 1,024, E 1 to 4,096, L × E at most 2,147,483 (a window of 1,000 steps), and L × k × T at most 2,147,483,591.",
            refusal.Message);
    }

    [Theory]
    [InlineData("1024x2048x1x1")]
    [InlineData("1x4096x1x1")]
    [InlineData("1x8x1x2147483591")]
    public void TheLargestShapesAModelTakesAreAccepted(string text) =>
        Assert.Equal(text, ModelShape.Parse(text).ToString());

    [Theory]
    [InlineData("")]
    [InlineData(",,")]
    public void AnEmptyListOfShapesIsRefused(string text)
    {
        var refusal = Assert.Throws<FormatException>(() => ModelShape.ParseList(text));
        Assert.Equal($"A list of model shapes is LxExkxT entries joined by commas (58x256x8x1,32x8x2x64); got '{text}'.", refusal.Message);
    }
}
