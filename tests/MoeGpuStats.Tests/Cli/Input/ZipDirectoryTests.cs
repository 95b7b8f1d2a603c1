using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary>
/// <see cref="ZipDirectory"/> read directly from end records written byte by byte: where the end record lies, when its
/// zip64 record counts, and the zip64 records it does not take (then the end record's own counts stand, as marked).
/// </summary>
public sealed class ZipDirectoryTests : IDisposable
{
    private const ushort Marked16 = ushort.MaxValue;
    private const uint Marked32 = uint.MaxValue;

    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-zip-");

    public void Dispose() => _folder.Delete(recursive: true);

    [Fact]
    public void BytesWithoutAnEndRecordHaveNoDirectory()
    {
        Assert.Null(Read(new byte[100]));
        Assert.Null(Read([.. "PK\u0005\u0006"u8]));
    }

    /// <summary>An end record is found at the file's first byte, and after the longest comment a zip holds (65,535 bytes).</summary>
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(ushort.MaxValue)]
    public void TheEndRecordIsFoundBeforeAnyCommentAtAnyPlace(int comment)
    {
        Assert.Equal(new ZipDirectory(7, 500), Read([.. End(7, 500, commentLength: (ushort)comment), .. new byte[comment]]));
    }

    /// <summary>A signature in the comment is not the end record: the record is the one whose comment ends the file.</summary>
    [Fact]
    public void ASignatureInTheCommentIsNotTheEndRecord()
    {
        byte[] inComment = [.. End(1, 46, commentLength: 9), .. new byte[3]];
        Assert.Equal(new ZipDirectory(7, 500), Read([.. End(7, 500, commentLength: (ushort)inComment.Length), .. inComment]));
    }

    /// <summary>
    /// The zip64 record counts where any field of the end record is marked (all ones), at whatever offset its locator
    /// gives; its count is the directory's total, not this disk's.
    /// </summary>
    [Theory]
    [InlineData(Marked16, 46u, 0u)]
    [InlineData((ushort)1, Marked32, 0u)]
    [InlineData((ushort)1, 46u, Marked32)]
    public void AMarkedEndRecordTakesItsZip64RecordsCounts(ushort members, uint bytes, uint offset)
    {
        byte[] prefix = new byte[100];
        byte[] file = [.. prefix, .. Zip64Record(onDisk: 3, total: 300_000, bytes: 70_000_000), .. Locator(prefix.Length), .. End(members, bytes, offset)];

        Assert.Equal(new ZipDirectory(300_000, 70_000_000), Read(file));
        Assert.Equal(new ZipDirectory(1, 46), Read([.. prefix, .. Zip64Record(3, 300_000, 70_000_000), .. Locator(prefix.Length), .. End(1, 46)]));
    }

    /// <summary>
    /// A zip64 record that is not there leaves the end record's own counts, marks and all: no locator before the end
    /// record (nor room for one), another signature at the locator or at the record, a record past the file's end.
    /// </summary>
    [Fact]
    public void WithoutAZip64RecordTheEndRecordsCountsStand()
    {
        var marked = new ZipDirectory(Marked16, Marked32);
        var record = Zip64Record(3, 300_000, 70_000_000);
        byte[] prefix = new byte[8];

        Assert.Equal(marked, Read([.. prefix, .. End(Marked16, Marked32)]));
        Assert.Equal(marked, Read([.. new byte[20], .. End(Marked16, Marked32)]));
        Assert.Equal(marked, Read([.. prefix, .. record, .. Locator(prefix.Length, signature: 0x07064b51), .. End(Marked16, Marked32)]));
        byte[] otherRecord = [.. record];
        otherRecord[0] ^= 1;
        Assert.Equal(marked, Read([.. prefix, .. otherRecord, .. Locator(prefix.Length), .. End(Marked16, Marked32)]));

        // The record must lie whole before the file's end: its 56 bytes from 55 before the end would read past it.
        var length = 60 + 20 + 22;
        Assert.Equal(marked, Read([.. new byte[60], .. Locator(length - 55), .. End(Marked16, Marked32)]));
        Assert.Equal(marked, Read([.. new byte[60], .. Locator(-1), .. End(Marked16, Marked32)]));
    }

    private ZipDirectory? Read(byte[] bytes)
    {
        var path = Path.Combine(_folder.FullName, $"{Guid.NewGuid():N}.zip");
        File.WriteAllBytes(path, bytes);
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read);
        var directory = ZipDirectory.Read(file);
        Assert.Equal(0, file.Position);
        return directory;
    }

    /// <summary>An end-of-central-directory record (APPNOTE 4.3.16) on disk 0.</summary>
    private static byte[] End(ushort members, uint bytes, uint offset = 0, ushort commentLength = 0)
    {
        var record = new byte[22];
        BitConverter.TryWriteBytes(record, 0x06054b50u);
        BitConverter.TryWriteBytes(record.AsSpan(8), members);
        BitConverter.TryWriteBytes(record.AsSpan(10), members);
        BitConverter.TryWriteBytes(record.AsSpan(12), bytes);
        BitConverter.TryWriteBytes(record.AsSpan(16), offset);
        BitConverter.TryWriteBytes(record.AsSpan(20), commentLength);
        return record;
    }

    /// <summary>A zip64 end-of-central-directory record (APPNOTE 4.3.14) of <paramref name="onDisk"/> members on this disk, <paramref name="total"/> in all.</summary>
    private static byte[] Zip64Record(ulong onDisk, ulong total, ulong bytes)
    {
        var record = new byte[56];
        BitConverter.TryWriteBytes(record, 0x06064b50u);
        BitConverter.TryWriteBytes(record.AsSpan(4), 44UL);
        BitConverter.TryWriteBytes(record.AsSpan(24), onDisk);
        BitConverter.TryWriteBytes(record.AsSpan(32), total);
        BitConverter.TryWriteBytes(record.AsSpan(40), bytes);
        return record;
    }

    /// <summary>A zip64 end-of-central-directory locator (APPNOTE 4.3.15) pointing at byte <paramref name="record"/>.</summary>
    private static byte[] Locator(long record, uint signature = 0x07064b50)
    {
        var locator = new byte[20];
        BitConverter.TryWriteBytes(locator, signature);
        BitConverter.TryWriteBytes(locator.AsSpan(8), record);
        BitConverter.TryWriteBytes(locator.AsSpan(16), 1u);
        return locator;
    }
}
