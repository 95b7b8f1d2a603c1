using MoeGpuStats.Cli.Input;

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

    /// <summary>
    /// A snapshot past the 256 MiB a JSON load is read in (here a small one and spaces after it, which JSON allows) is
    /// read as a snapshot, within the bound on snapshots: --save writes snapshots of up to 600 MB. A JSON array as long
    /// is still refused by the load's bound.
    /// </summary>
    [Fact]
    public void ASnapshotPastTheBoundOnAJsonLoadIsReadAsASnapshot()
    {
        using var stats = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 3 });
        stats.RecordStep([0, 1, 2, 2, 1, 1], tokens: 3, topK: 1);
        var path = Path.Combine(_folder.FullName, "padded.json");
        SnapshotFile.Save(stats, path);
        using (var file = new FileStream(path, FileMode.Append))
        {
            var spaces = new byte[1 << 20];
            spaces.AsSpan().Fill((byte)' ');
            for (var written = 0; written <= 256; written++)
            {
                file.Write(spaces);
            }
        }

        var loads = LoadMatrix.Read(path);
        Assert.Equal(new long[,] { { 1, 1, 1 }, { 0, 2, 1 } }, loads);

        var array = Path.Combine(_folder.FullName, "array.json");
        File.WriteAllText(array, "[[1, 2]]");
        using (var file = new FileStream(array, FileMode.Append))
        {
            file.SetLength(file.Length + (256L << 20));
        }

        Assert.StartsWith($"{array}: 268,435,464 bytes; a JSON load file is read whole, up to 268,435,456", Assert.Throws<InvalidDataException>(() => LoadMatrix.Read(array)).Message);
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
