using System.Text;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Tests.Cli;

public sealed class NpyIdsTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-npy-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>Writes a version-1 .npy file as np.save does (header padded to 64 bytes).</summary>
    internal static string Write(string path, string descr, string shape, byte[] data, bool fortran = false)
    {
        var header = $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': ({shape}), }}";
        header += new string(' ', (64 - (10 + header.Length + 1) % 64) % 64) + "\n";
        using var file = File.Create(path);
        file.Write([0x93, .. "NUMPY"u8, 1, 0]);
        file.Write(BitConverter.GetBytes((ushort)header.Length));
        file.Write(Encoding.Latin1.GetBytes(header));
        file.Write(data);
        return path;
    }

    [Fact]
    public void Int32StepsReadBackInOrder()
    {
        int[] values = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        var path = Write(Path.Combine(_folder.FullName, "a.npy"), "<i4", "2, 3, 2", [.. values.SelectMany(BitConverter.GetBytes)]);
        using var npy = NpyIds.Open(path);
        Assert.Equal((2, 3, 2), (npy.Steps, npy.Tokens, npy.TopK));
        var step = new int[6];
        npy.ReadStep(1, step);
        Assert.Equal([6, 7, 8, 9, 10, 11], step);
        Assert.Equal(11L, npy.MaxId());
    }

    [Fact]
    public void Int64TwoDimensionalIsOneStepAndOutOfRangeIdsBecomeInvalidNotPadding()
    {
        long[] values = [1, 2, long.MaxValue, 3];
        var path = Write(Path.Combine(_folder.FullName, "b.npy"), "<i8", "2, 2", [.. values.SelectMany(BitConverter.GetBytes)]);
        using var npy = NpyIds.Open(path);
        Assert.Equal((1, 2, 2), (npy.Steps, npy.Tokens, npy.TopK));
        var step = new int[4];
        npy.ReadStep(0, step);
        Assert.Equal([1, 2, NpyIds.OutOfRangeId, 3], step);
    }

    [Theory]
    [InlineData("<f4", "2, 2", false, 16, "dtype '<f4'")]
    [InlineData(">i4", "2, 2", false, 16, "dtype '>i4'")]
    [InlineData("<i4", "2, 2", true, 16, "Fortran")]
    [InlineData("<i4", "2, 2, 2, 2", false, 64, "4 dimensions")]
    [InlineData("<i4", "4, 2", false, 16, "truncated")]
    public void AFileReplayCannotReadIsAClearError(string descr, string shape, bool fortran, int bytes, string expected)
    {
        var path = Write(Path.Combine(_folder.FullName, "bad.npy"), descr, shape, new byte[bytes], fortran);
        var error = Assert.Throws<InvalidDataException>(() => NpyIds.Open(path));
        Assert.Contains(expected, error.Message);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void NotNumpyAtAllIsAClearError()
    {
        var path = Path.Combine(_folder.FullName, "text.npy");
        File.WriteAllText(path, "hello, world");
        Assert.Contains("not a NumPy", Assert.Throws<InvalidDataException>(() => NpyIds.Open(path)).Message);
    }
}
