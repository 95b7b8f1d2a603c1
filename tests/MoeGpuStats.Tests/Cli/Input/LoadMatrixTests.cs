using MoeGpuStats.Cli.Input;
using MoeGpuStats.Tests.Support;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary><see cref="LoadMatrix"/> read directly: the loads a .npy file holds at the edges of what plan reads.</summary>
public sealed class LoadMatrixTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-loads-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>
    /// A Fortran-ordered load of one row, one column or one dimension holds its loads as C order does and is read;
    /// of more rows and columns it is refused.
    /// </summary>
    [Theory]
    [InlineData("1, 3", null)]
    [InlineData("3, 1", null)]
    [InlineData("3,", null)]
    [InlineData("2, 2", "Fortran-ordered array; save it in C order (np.ascontiguousarray).")]
    public void AFortranOrderedLoadIsReadWhereItsOrderIsCOrder(string shape, string? expected)
    {
        var dims = shape.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
        var values = Enumerable.Range(1, dims.Aggregate(1, (a, b) => a * b)).Select(v => (long)v).ToArray();
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "fortran.npy"), "<i8", shape, [.. values.SelectMany(BitConverter.GetBytes)], fortran: true);

        if (expected is null)
        {
            var loads = LoadMatrix.Read(npy);
            Assert.Equal(dims.Length == 1 ? [1, dims[0]] : dims, new[] { loads.GetLength(0), loads.GetLength(1) });
            Assert.Equal(values, loads.Cast<long>());
        }
        else
        {
            Assert.Equal($"{npy}: {expected}", Assert.Throws<InvalidDataException>(() => LoadMatrix.Read(npy)).Message);
        }
    }

    /// <summary>A load of as many experts as a plan places, 65,536, is read.</summary>
    [Fact]
    public void ALoadOfTheMostExpertsAPlanPlacesIsRead()
    {
        var bytes = new byte[65_536];
        bytes[7] = 3;
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "widest.npy"), "|u1", "1, 65536", bytes);

        var loads = LoadMatrix.Read(npy);

        Assert.Equal((1, 65_536), (loads.GetLength(0), loads.GetLength(1)));
        Assert.Equal(3, loads[0, 7]);
    }
}
