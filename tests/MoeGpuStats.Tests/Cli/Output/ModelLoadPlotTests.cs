using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>The model heat map's cells beyond its pixels: a block of values by its largest (load) or smallest (balancedness), none left out.</summary>
public sealed class ModelLoadPlotTests
{
    [Fact]
    public void EveryValueReachesACellTheLastBlocksPartial()
    {
        // 5 layers × 7 experts: one hot value per layer, wherever it lies, and one cold one.
        var values = new double[5, 7];
        (values[0, 6], values[1, 0], values[2, 3], values[3, 5], values[4, 6]) = (9, 8, 7, 6, 5);
        values[4, 0] = -1;

        var largest = ModelLoadPlot.Reduce(values, rowBlock: 2, columnBlock: 3, largest: true);
        var smallest = ModelLoadPlot.Reduce(values, rowBlock: 2, columnBlock: 3, largest: false);

        Assert.Equal(new double[,] { { 8, 0, 9 }, { 0, 7, 0 }, { 0, 0, 5 } }, largest);
        Assert.Equal(new double[,] { { 0, 0, 0 }, { 0, 0, 0 }, { -1, 0, 5 } }, smallest);
    }

    /// <summary>A value without load (NaN) does not hide its block's others; a block of them alone stays NaN (drawn grey).</summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ABlockIsNaNOnlyWhenAllItsValuesAre(bool largest)
    {
        var values = new double[,] { { double.NaN, 0.5, double.NaN, double.NaN }, { 0.25, double.NaN, double.NaN, double.NaN } };

        var cells = ModelLoadPlot.Reduce(values, rowBlock: 2, columnBlock: 2, largest);

        Assert.Equal(new double[,] { { largest ? 0.5 : 0.25, double.NaN } }, cells);
    }

    [Fact]
    public void AModelThatFitsItsPixelsKeepsACellPerValue()
    {
        var values = new double[ModelLoadPlot.MaxRows, ModelLoadPlot.MaxColumns];
        Assert.Same(values, ModelLoadPlot.Reduce(values, 1, 1, largest: true));
    }
}
