using System.Text;
using MoeGpuStats.Cli.Input;
using static MoeGpuStats.Tests.Support.NpyFile;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary>The .npy header's edges: each bound taken at its value and refused one past it, each spelling NumPy writes.</summary>
public sealed partial class NpyIdsTests
{
    /// <summary>
    /// A uint64 past int64 is an invalid id, never -1 padding (the largest uint64 is -1 saved unsigned); the largest
    /// int64 saved as uint64 is a value the largest id can name, one past it is refused as the largest id.
    /// </summary>
    [Fact]
    public void UInt64IdsPastInt64AreInvalidAndNamedAsTheLargest()
    {
        ulong[] values = [0, ulong.MaxValue, 1UL << 63, 3];
        var past = Write(Path.Combine(_folder.FullName, "past.npy"), "<u8", "2, 2", [.. values.SelectMany(BitConverter.GetBytes)]);
        using (var npy = NpyIds.Open(past, layout: null))
        {
            var step = new int[4];
            npy.ReadStep(0, step);
            Assert.Equal([0, NpyIds.OutOfRangeId, NpyIds.OutOfRangeId, 3], step);
            Assert.StartsWith($"{past}: id 18,446,744,073,709,551,615 is past any expert count", Assert.Throws<IdPastInt64Exception>(() => npy.MaxId()).Message);
        }

        ulong[] largest = [0, long.MaxValue];
        var fits = Write(Path.Combine(_folder.FullName, "fits.npy"), "<u8", "1, 2", [.. largest.SelectMany(BitConverter.GetBytes)]);
        using (var npy = NpyIds.Open(fits, layout: null))
        {
            Assert.Equal(long.MaxValue, npy.MaxId());
        }
    }

    /// <summary>Each unsigned type's largest value, which -1 padding becomes saved unsigned, is counted for the warning after the replay.</summary>
    [Theory]
    [InlineData("|u1", 1, "255")]
    [InlineData("<u2", 2, "65,535")]
    [InlineData("<u8", 8, "18,446,744,073,709,551,615")]
    public void EachUnsignedTypesLargestValueIsCountedForTheWarning(string descr, int itemSize, string largest)
    {
        var bytes = new byte[4 * itemSize];
        bytes.AsSpan(itemSize, 2 * itemSize).Fill(0xFF);
        var path = Write(Path.Combine(_folder.FullName, "unsigned.npy"), descr, "2, 2", bytes);
        using var npy = NpyIds.Open(path, layout: null);

        npy.ReadStep(0, new int[4]);

        Assert.StartsWith($"warning: 2 ids replayed are {largest}, the largest {npy.DType}", ((IRoutingTrace)npy).UnsignedPaddingWarning());
    }

    /// <summary>
    /// NumPy's native byte order, '=' or none, is little-endian wherever .NET runs this, for every type; np.load also
    /// reads a type's name, as writers other than np.save put it.
    /// </summary>
    [Theory]
    [InlineData("=u2", 2)]
    [InlineData("=i2", 2)]
    [InlineData("=i4", 4)]
    [InlineData("=i8", 8)]
    [InlineData("=u8", 8)]
    [InlineData("i8", 8)]
    [InlineData("u2", 2)]
    [InlineData("int64", 8)]
    [InlineData("int32", 4)]
    [InlineData("uint16", 2)]
    public void NativeByteOrderReadsAsLittleEndian(string descr, int itemSize)
    {
        var bytes = new byte[4 * itemSize];
        for (var i = 0; i < 4; i++)
        {
            bytes[i * itemSize] = (byte)(i + 1);
        }

        var path = Write(Path.Combine(_folder.FullName, "native.npy"), descr, "2, 2", bytes);
        using var npy = NpyIds.Open(path, layout: null);
        var step = new int[4];
        npy.ReadStep(0, step);

        Assert.Equal([1, 2, 3, 4], step);
    }

    /// <summary>A big-endian uint64 gets the same advice as the other big-endian types.</summary>
    [Fact]
    public void BigEndianUInt64IsRefusedWithTheWayToSaveIt()
    {
        var path = Write(Path.Combine(_folder.FullName, "big-endian.npy"), ">u8", "2, 2", new byte[32]);

        var error = Refusal(path);

        Assert.EndsWith("(save it as a.astype('<u8')).", error);
    }

    /// <summary>Python's long literals in either case, 0, 00 and -0 (which Python reads as 0) and a dimension of leading zeros, an empty one.</summary>
    [Theory]
    [InlineData("4l, 2l", null)]
    [InlineData("2, 00", "holds no ids")]
    [InlineData("-0, 2", "holds no ids")]
    [InlineData("2, -00", "holds no ids")]
    [InlineData("-1, 2", "dimension -1 is negative.")]
    [InlineData("2, 07", "dimension 07 has leading zeros, which Python (and so np.load) refuses.")]
    [InlineData("2, , 2", "dimension '' is not a whole number.")]
    public void ShapeSpellingsAreReadAsPythonReadsThem(string shape, string? expected)
    {
        var path = Write(Path.Combine(_folder.FullName, "spelled.npy"), "<i4", shape, new byte[32]);

        if (expected is null)
        {
            using var npy = NpyIds.Open(path, layout: null);
            Assert.Equal((1, 4, 2), (npy.Steps, npy.Tokens, npy.TopK));
        }
        else
        {
            Assert.Contains(expected, Refusal(path));
        }
    }

    /// <summary>One byte more than the header and the array take is refused, as np.save writes nothing after the array.</summary>
    [Fact]
    public void OneByteAfterTheArrayIsRefused()
    {
        var path = Write(Path.Combine(_folder.FullName, "one-more.npy"), "<i4", "2, 2", new byte[17]);

        var error = Refusal(path);

        Assert.Equal($"{path}: shape (2, 2) takes 144 bytes with its header, and 145 are there: the header or the data is corrupt (np.save writes nothing after the array).", error);
    }

    /// <summary>
    /// Version 3 headers are UTF-8 and read; versions 1 and 2 are Latin-1 (an unreadable header is quoted as decoded);
    /// a header without fortran_order is unreadable, one naming it twice is refused.
    /// </summary>
    [Theory]
    [InlineData(3, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), 'note': 'é', }\n", null)]
    [InlineData(3, "{'descr': '<i4', 'fortran_order': False, 'shap': 'é'}\n", "unreadable header '{'descr': '<i4', 'fortran_order': False, 'shap': 'é'}'")]
    [InlineData(1, "{'descr': '<i4', 'fortran_order': False, 'shap': 'é'}\n", "unreadable header '{'descr': '<i4', 'fortran_order': False, 'shap': 'Ã©'}'")]
    [InlineData(2, "{'descr': '<i4', 'shape': (2, 2), }\n", "unreadable header '{'descr': '<i4', 'shape': (2, 2), }' (expected 'descr', 'fortran_order' and 'shape').")]
    [InlineData(2, "{'descr': '<i4', 'fortran_order': False, 'fortran_order': True, 'shape': (2, 2), }\n", "names 'descr', 'fortran_order' or 'shape' twice; np.save writes each once.")]
    public void EachVersionsHeaderIsDecodedAsNumPyWritesIt(int version, string header, string? expected)
    {
        var path = Path.Combine(_folder.FullName, "versions.npy");
        var text = Encoding.UTF8.GetBytes(header);
        byte[] length = version == 1 ? BitConverter.GetBytes((ushort)text.Length) : BitConverter.GetBytes(text.Length);
        File.WriteAllBytes(path, [0x93, .. "NUMPY"u8, (byte)version, 0, .. length, .. text, .. new int[] { 4, -1, 0, 9 }.SelectMany(BitConverter.GetBytes)]);

        if (expected is null)
        {
            using var npy = NpyIds.Open(path, layout: null);
            var step = new int[4];
            npy.ReadStep(0, step);
            Assert.Equal([4, -1, 0, 9], step);
        }
        else
        {
            Assert.Contains(expected, Refusal(path));
        }
    }

    /// <summary>A header of the most bytes a header may have is read; one byte more is refused.</summary>
    [Theory]
    [InlineData(NpyHeader.MaxHeaderBytes, null)]
    [InlineData(NpyHeader.MaxHeaderBytes + 1, "a header of 65,537 bytes; an array of ids or loads has one of a few hundred (at most 65,536).")]
    public void TheLongestHeaderIsReadAndOneByteMoreIsRefused(int headerBytes, string? expected)
    {
        var header = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 2), }";
        header += new string(' ', headerBytes - header.Length - 1) + "\n";
        var path = Path.Combine(_folder.FullName, "long-header.npy");
        File.WriteAllBytes(path, VersionTwo(header, [.. new int[] { 4, -1, 0, 9 }.SelectMany(BitConverter.GetBytes)]));

        if (expected is null)
        {
            using var npy = NpyIds.Open(path, layout: null);
            Assert.Equal((1, 2, 2), (npy.Steps, npy.Tokens, npy.TopK));
        }
        else
        {
            Assert.EndsWith(expected, Refusal(path));
        }
    }

    /// <summary>Where a file ends, each is refused by what it cuts: a version 2 preamble of 11 bytes, a header one byte longer than the file.</summary>
    [Fact]
    public void DataEndingInsideThePreambleOrHeaderIsRefusedByWhatItCuts()
    {
        var v2 = Path.Combine(_folder.FullName, "v2-cut.npy");
        File.WriteAllBytes(v2, [0x93, .. "NUMPY"u8, 2, 0, 0x40, 0, 0]);
        Assert.Equal($"{v2}: truncated: the file ends inside the .npy preamble (11 bytes).", Refusal(v2));

        var header = "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1), }\n";
        var longer = Path.Combine(_folder.FullName, "header-past-end.npy");
        File.WriteAllBytes(longer, [0x93, .. "NUMPY"u8, 1, 0, .. BitConverter.GetBytes((ushort)(header.Length + 1)), .. Encoding.Latin1.GetBytes(header)]);
        Assert.Equal($"{longer}: truncated: the header claims {header.Length + 1} bytes, the file has {header.Length} after the preamble.", Refusal(longer));
    }

    /// <summary>An unreadable header is quoted to its first 120 characters, so that its error stays a short line.</summary>
    [Fact]
    public void AnUnreadableHeaderIsQuotedToItsFirst120Characters()
    {
        var header = "{'descr': '<i4', " + new string('x', 200) + "}\n";
        var path = Path.Combine(_folder.FullName, "wordy.npy");
        File.WriteAllBytes(path, [0x93, .. "NUMPY"u8, 1, 0, .. BitConverter.GetBytes((ushort)header.Length), .. Encoding.Latin1.GetBytes(header)]);

        var error = Refusal(path);

        Assert.Equal($"{path}: unreadable header '{header[..120]}...' (expected 'descr', 'fortran_order' and 'shape').", error);
    }

    /// <summary>The one-line refusal of opening <paramref name="path"/> without a layout.</summary>
    private static string Refusal(string path) => Assert.Throws<InvalidDataException>(() => NpyIds.Open(path, layout: null)).Message;
}
