using System.Text;
using MoeGpuStats.Cli.Input;
using static MoeGpuStats.Tests.Support.NpyFile;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary>
/// <see cref="NpyIds"/>: the .npy files replay reads, the ones it refuses before allocating anything, and
/// (in NpyIdsTests.Fuzz.cs) mutations of valid files. The reader runs in the culture moegs runs in, the
/// invariant one (<see cref="MoeGpuStats.Cli.MoegsCommandLine.RunAsync"/>), whatever the machine's.
/// </summary>
[UseCulture("")]
public sealed partial class NpyIdsTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-npy-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>vLLM returns routed experts as int16; other recorders save uint8 or int8 where E fits (a single byte's order, '>i1', is no order).</summary>
    [Theory]
    [InlineData("<i2", "int16")]
    [InlineData("<u2", "uint16")]
    [InlineData("|i1", "int8")]
    [InlineData("|u1", "uint8")]
    [InlineData(">i1", "int8")]
    [InlineData(">u1", "uint8")]
    [InlineData("<i8", "int64")]
    public void NarrowAndWideIntegerIdsReadAsTheirValues(string descr, string name)
    {
        long[] values = [0, 7, 3, -1, 1, 2];
        var bytes = descr switch
        {
            "<i2" => values.SelectMany(v => BitConverter.GetBytes((short)v)).ToArray(),
            "<u2" => values.SelectMany(v => BitConverter.GetBytes((ushort)v)).ToArray(),
            "|i1" or ">i1" => values.Select(v => (byte)(sbyte)v).ToArray(),
            "|u1" or ">u1" => values.Select(v => (byte)v).ToArray(),
            _ => values.SelectMany(BitConverter.GetBytes).ToArray(),
        };
        var path = Write(Path.Combine(_folder.FullName, $"{name}.npy"), descr, "3, 2", bytes);
        using var npy = NpyIds.Open(path, layout: null);
        Assert.Equal(name, npy.DType);
        var step = new int[6];
        npy.ReadStep(0, step);

        // Unsigned types have no -1: their largest value is an id like any other (invalid unless E exceeds it).
        var minusOne = descr switch { "<u2" => ushort.MaxValue, "|u1" or ">u1" => byte.MaxValue, _ => -1 };
        Assert.Equal([0, 7, 3, minusOne, 1, 2], step);
        Assert.Equal(Math.Max(7, minusOne), npy.MaxId());
    }

    [Fact]
    public void Int32StepsReadBackInOrder()
    {
        int[] values = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        var path = Write(Path.Combine(_folder.FullName, "a.npy"), "<i4", "2, 3, 2", [.. values.SelectMany(BitConverter.GetBytes)]);
        using var npy = NpyIds.Open(path, IdLayout.StepsTokensK);
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
        using var npy = NpyIds.Open(path, layout: null);
        Assert.Equal((1, 2, 2), (npy.Steps, npy.Tokens, npy.TopK));
        var step = new int[4];
        npy.ReadStep(0, step);
        Assert.Equal([1, 2, NpyIds.OutOfRangeId, 3], step);
    }

    [Theory]
    [InlineData("<f4", "2, 2", false, 16, "dtype '<f4'; expected little-endian integers: int8, uint8, int16, uint16, int32, int64 or uint64.")]
    [InlineData(">i4", "2, 2", false, 16, "dtype '>i4'; expected little-endian integers: int8, uint8, int16, uint16, int32, int64 or uint64 (save it as a.astype('<i4')).")]
    [InlineData("<i4", "2, 2", true, 16, "Fortran")]
    [InlineData("<i4", "2, 2, 2, 2, 2", false, 128, "5 dimensions")]
    [InlineData("<i4", "4, 2", false, 16, "truncated")]
    [InlineData("<i4", "2, 2", false, 24, "takes 144 bytes with its header, and 152 are there: the header or the data is corrupt")]
    public void AFileReplayCannotReadIsAClearError(string descr, string shape, bool fortran, int bytes, string expected)
    {
        var path = Write(Path.Combine(_folder.FullName, "bad.npy"), descr, shape, new byte[bytes], fortran);
        var error = Assert.Throws<InvalidDataException>(() => NpyIds.Open(path, layout: null));
        Assert.Contains(expected, error.Message);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void NotNumpyAtAllIsAClearError()
    {
        var path = Path.Combine(_folder.FullName, "text.npy");
        File.WriteAllText(path, "hello, world");
        Assert.Contains("not a NumPy", Assert.Throws<InvalidDataException>(() => NpyIds.Open(path, layout: null)).Message);
    }

    [Theory]
    [InlineData("-1, 2", "dimension -1 is negative")]
    [InlineData("2, -3L", "dimension -3L is negative")]
    [InlineData("2147483647, 2147483647, 1", "more ids than any file holds")]
    [InlineData("1, 1073741824, 2", "truncated")]
    [InlineData("4294967296, 4294967296, 4294967296", "more ids than any file holds")]
    [InlineData("99999999999999999999, 2", "larger than any file holds")]
    [InlineData("a, 2", "dimension 'a' is not a whole number")]
    [InlineData("2.5, 2", "dimension '2.5' is not a whole number")]
    [InlineData("0x10, 2", "dimension '0x10' is not a whole number")]
    [InlineData("2, 007", "dimension 007 has leading zeros, which Python (and so np.load) refuses.")]
    [InlineData("3, 0, 2", "holds no ids")]
    [InlineData("0, 4, 2", "holds no ids")]
    [InlineData("2147483647, 0, 2", "holds no ids")]
    [InlineData("8", "1 dimension;")]
    [InlineData("", "0 dimensions")]
    public void AShapeTheFileCannotHoldIsRefusedBeforeAnythingIsAllocated(string shape, string expected)
    {
        var path = Write(Path.Combine(_folder.FullName, "shape.npy"), "<i4", shape, new byte[16]);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<InvalidDataException>(() => NpyIds.Open(path, layout: null));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "refusing a header allocated more than a header's worth");
        Assert.Contains(expected, error.Message);
        Assert.StartsWith(path, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void PythonTwoLongLiteralsAreRead()
    {
        int[] values = [3, 1, 0, 2, 5, 4, 7, 6];
        var path = Write(Path.Combine(_folder.FullName, "py2.npy"), "<i4", "4L, 2L", [.. values.SelectMany(BitConverter.GetBytes)]);
        using var npy = NpyIds.Open(path, layout: null);
        Assert.Equal((1, 4, 2), (npy.Steps, npy.Tokens, npy.TopK));
        Assert.Equal(7L, npy.MaxId());
    }

    [Fact]
    public void AVersionTwoHeaderLongerThanTheFileIsRefused()
    {
        var path = Path.Combine(_folder.FullName, "v2.npy");
        File.WriteAllBytes(path, [0x93, .. "NUMPY"u8, 2, 0, 0xF0, 0xFF, 0xFF, 0xFF]);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<InvalidDataException>(() => NpyIds.Open(path, layout: null));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        Assert.Contains("truncated: the header claims 4,294,967,280 bytes, the file has 0", error.Message);
    }

    [Fact]
    public void AVersionTwoFileIsRead()
    {
        var header = "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2, 2), }\n";
        var path = Path.Combine(_folder.FullName, "v2ok.npy");
        File.WriteAllBytes(path, [0x93, .. "NUMPY"u8, 2, 0, .. BitConverter.GetBytes(header.Length), .. Encoding.Latin1.GetBytes(header), .. new long[] { 4, -1, 0, 9 }.SelectMany(BitConverter.GetBytes)]);
        using var npy = NpyIds.Open(path, IdLayout.StepsTokensK);
        var step = new int[4];
        npy.ReadStep(0, step);
        Assert.Equal([4, -1, 0, 9], step);
    }

    /// <summary>NumPy reads a repeated key's last value: a header naming 'descr' twice would be read as another dtype than NumPy's.</summary>
    [Theory]
    [InlineData("{'descr': '<i4', 'fortran_order': False, 'descr': '<f4', 'shape': (1, 2, 2), }\n")]
    [InlineData("{'descr': '<i4', 'fortran_order': False, 'shape': (1, 2, 2), 'shape': (2, 2, 1), }\n")]
    public void AHeaderThatNamesAKeyTwiceIsRefused(string header)
    {
        var path = Path.Combine(_folder.FullName, "twice.npy");
        File.WriteAllBytes(path, [0x93, .. "NUMPY"u8, 2, 0, .. BitConverter.GetBytes(header.Length), .. Encoding.Latin1.GetBytes(header), .. new int[] { 4, -1, 0, 9 }.SelectMany(BitConverter.GetBytes)]);
        var error = Assert.Throws<InvalidDataException>(() => NpyIds.Open(path, IdLayout.StepsTokensK));
        Assert.EndsWith("names 'descr', 'fortran_order' or 'shape' twice; np.save writes each once.", error.Message);
    }

    [Fact]
    public void PaddingIsPassedThroughAndTheLargestIdIgnoresIt()
    {
        int[] values = [-1, -1, 2, -1, -7, -1];
        var path = Write(Path.Combine(_folder.FullName, "pad.npy"), "<i4", "3, 2", [.. values.SelectMany(BitConverter.GetBytes)]);
        using var npy = NpyIds.Open(path, layout: null);
        var step = new int[6];
        npy.ReadStep(0, step);
        Assert.Equal(values, step);
        Assert.Equal(2L, npy.MaxId());
    }

    [Fact]
    public void TheLargestIdIsExactEvenWhereIdPlusOneOverflowsAnInt()
    {
        long[] values = [int.MaxValue, 3, 5_000_000_000, -1];
        var path = Write(Path.Combine(_folder.FullName, "big.npy"), "<i8", "2, 2", [.. values.SelectMany(BitConverter.GetBytes)]);
        using var npy = NpyIds.Open(path, layout: null);
        Assert.Equal(5_000_000_000L, npy.MaxId());
    }

    [Theory]
    [InlineData(4, 1L, int.MaxValue, 1L, true)]
    [InlineData(4, 1L, 1L << 30, 2L, false)]
    [InlineData(8, 2L, 1L << 29, 4L, false)]
    [InlineData(4, 3L, 1L << 29, 4L, false)]
    public void TheStepLimitIsTwoToTheThirtyOneMinusOneIds(int itemSize, long steps, long tokens, long topK, bool accepted)
    {
        long offset = 128;
        long fileLength = offset + (steps * tokens * topK * itemSize);
        if (accepted)
        {
            Assert.Equal(new NpyShape(IdLayout.StepsTokensK, (int)steps, 1, (int)tokens, (int)topK), NpyIds.Validate("f.npy", [steps, tokens, topK], IdLayout.StepsTokensK, itemSize, offset, fileLength));
        }
        else
        {
            var error = Assert.Throws<InvalidDataException>(() => NpyIds.Validate("f.npy", [steps, tokens, topK], IdLayout.StepsTokensK, itemSize, offset, fileLength));
            Assert.Contains("replay reads at most 2,147,483,647", error.Message);
        }

        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => NpyIds.Validate("f.npy", [steps, tokens, topK], IdLayout.StepsTokensK, itemSize, offset, fileLength - 1)).Message);
    }

    [Fact]
    public void NegativeDimensionsCannotCancelOutInTheSizeCheck()
    {
        var error = Assert.Throws<InvalidDataException>(() => NpyIds.Validate("f.npy", [-2, -4, 2], IdLayout.StepsTokensK, 4, 128, 1 << 20));
        Assert.Contains("dimension -2 is negative", error.Message);
    }

    /// <summary>
    /// A sparse file of 4 GiB of int32 ids, 2^29 per step: the step's byte count and offsets pass 2^31,
    /// which a 32-bit byte count got wrong. Only a few ids are read, so nothing large is allocated.
    /// </summary>
    [Fact]
    public void StepsOfTwoToTheTwentyNineInt32IdsReadAtTheRightOffsets()
    {
        const int perStep = 1 << 29;
        var path = Write(Path.Combine(_folder.FullName, "sparse.npy"), "<i4", $"2, {perStep}, 1", []);
        long dataOffset = new FileInfo(path).Length;
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Write))
        {
            file.SetLength(dataOffset + (2L * perStep * 4));
            file.Position = dataOffset + ((perStep + (long)perStep - 3) * 4);
            file.Write([.. new[] { 11, -1, 13 }.SelectMany(BitConverter.GetBytes)]);
        }

        using var npy = NpyIds.Open(path, IdLayout.StepsTokensK);
        Assert.Equal((2, perStep, 1), (npy.Steps, npy.Tokens, npy.TopK));
        var tail = new int[4];
        npy.ReadIds((2L * perStep) - 4, tail);
        Assert.Equal([0, 11, -1, 13], tail);
    }

    /// <summary>
    /// Tokens-first rows of k ids each longer than the reader's 1 MiB chunk (1.5 MiB: a chunk and a half) are read
    /// in pieces into their places, for the second step as for the first, and no chunk as large as a row is
    /// allocated: such a chunk took as many bytes as the row, and a row of 2^28 int64 ids overflowed its byte count.
    /// </summary>
    [Theory]
    [InlineData("<i4", 4)]
    [InlineData("<i8", 8)]
    public async Task RowsLongerThanAChunkAreReadInPiecesIntoTheirPlaces(string descr, int itemSize)
    {
        const int steps = 2, tokens = 2, layers = 2, rowBytes = 3 << 19;
        var topK = rowBytes / itemSize;
        var values = Enumerable.Range(0, steps * tokens * layers * topK);
        var path = Write(
            Path.Combine(_folder.FullName, "rows.npy"), descr, $"{steps}, {tokens}, {layers}, {topK}",
            itemSize == 4 ? [.. values.SelectMany(BitConverter.GetBytes)] : [.. values.SelectMany(value => BitConverter.GetBytes((long)value))]);
        using var npy = NpyIds.Open(path, IdLayout.StepsTokensLayersK);
        var step = new int[npy.IdsPerStep];

        // On a thread of its own, whose chunk buffer no other read has grown: the read allocates the chunk, and only the chunk.
        var allocated = await Task.Factory.StartNew(
            () =>
            {
                var before = GC.GetAllocatedBytesForCurrentThread();
                npy.ReadStep(0, step);
                return GC.GetAllocatedBytesForCurrentThread() - before;
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
        Assert.True(allocated < rowBytes, $"{allocated:N0} bytes allocated to read rows of {rowBytes:N0} bytes");

        for (var s = 0; s < steps; s++)
        {
            npy.ReadStep(s, step);
            for (var token = 0; token < tokens; token++)
            {
                for (var layer = 0; layer < layers; layer++)
                {
                    var row = step.AsSpan(((layer * tokens) + token) * topK, topK);
                    var first = ((((s * tokens) + token) * layers) + layer) * topK;
                    Assert.True(row.SequenceEqual(Enumerable.Range(first, topK).ToArray()), $"step {s}, token {token}, layer {layer} holds other ids");
                }
            }
        }
    }

    /// <summary>A step larger than the reader's 1 MiB chunk: rows that straddle chunks land in their places.</summary>
    [Fact]
    public void TheReorderIsExactAcrossReadChunks()
    {
        const int tokens = 40_000, layers = 3, topK = 3;
        var ids = Enumerable.Range(0, tokens * layers * topK).ToArray();
        var path = _folder.WriteInt32("big.npy", $"{tokens}, {layers}, {topK}", ids);
        using var npy = NpyIds.Open(path, IdLayout.TokensLayersK);
        Assert.Equal((1, layers, tokens, topK), (npy.Steps, npy.Layers, npy.Tokens, npy.TopK));
        var step = new int[npy.IdsPerStep];
        npy.ReadStep(0, step);
        for (var layer = 0; layer < layers; layer++)
        {
            for (var token = 0; token < tokens; token++)
            {
                for (var slot = 0; slot < topK; slot++)
                {
                    Assert.Equal((((token * layers) + layer) * topK) + slot, step[(((layer * tokens) + token) * topK) + slot]);
                }
            }
        }
    }
}
