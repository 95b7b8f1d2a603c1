using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary><see cref="DeployedPlacement"/> read directly: the largest placements <c>plan --current</c> reads.</summary>
public sealed class DeployedPlacementTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-placement-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>A --current placement of the most layers a model has, or of the most slots a plan places, is read.</summary>
    [Theory]
    [InlineData(1_024, 1)]
    [InlineData(1, 65_536)]
    public void ACurrentPlacementOfTheMostLayersOrSlotsIsRead(int layers, int slots)
    {
        var current = Path.Combine(_folder.FullName, "largest.json");
        var row = $"[{string.Join(',', Enumerable.Range(0, slots))}]";
        File.WriteAllText(current, $"[{string.Join(',', Enumerable.Repeat(row, layers))}]");

        var placement = DeployedPlacement.Read(current);

        Assert.Equal(layers, placement.PhysicalToLogical.Length);
        Assert.All(placement.PhysicalToLogical, layer => Assert.Equal(Enumerable.Range(0, slots), layer));
    }
}
