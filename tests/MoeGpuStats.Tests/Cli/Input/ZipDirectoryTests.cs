using MoeGpuStats.Cli.Input;
using static MoeGpuStats.Tests.Support.ZipRecords;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary>
/// <see cref="ZipDirectory"/> read directly from end records written byte by byte: which end record counts (the one the
/// archive reader takes), when its zip64 record counts, the zip64 records it does not take (then the end record's own
/// counts stand), and the directory's bytes from its offset whatever it claims.
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

    /// <summary>Bytes after the end record's comment (a newline appended to the file) leave it the end record, as the archive reader takes it.</summary>
    [Fact]
    public void BytesAfterTheEndRecordLeaveItTheEndRecord()
    {
        Assert.Equal(new ZipDirectory(7, 500), Read([.. End(7, 500), .. "\n"u8]));
        Assert.Equal(new ZipDirectory(7, 500), Read([.. End(7, 500, commentLength: 3), .. "abc\n"u8]));
        byte[] prefix = new byte[100];
        Assert.Equal(new ZipDirectory(300_000, 70_000_000), Read([.. prefix, .. Zip64Record(3, 300_000, 70_000_000), .. Locator(prefix.Length), .. End(Marked16, Marked32), .. "\n"u8]));
    }

    /// <summary>
    /// An end-record signature in the comment of the record that ends the file is what the archive reader takes for the
    /// end: a record of other members, or bytes it cannot read. Readers differ on the archive, and it is refused.
    /// </summary>
    [Fact]
    public void AnEndRecordSignatureInTheCommentIsRefused()
    {
        byte[] record = [.. End(1, 46, commentLength: 0), .. "JUNK"u8];
        var refusal = Assert.Throws<InvalidDataException>(() => Read([.. End(7, 500, commentLength: (ushort)(record.Length + 1)), .. "X"u8, .. record]));
        Assert.Equal(
            "its end-of-directory record (at byte 0) holds another end-of-directory signature (at byte 23), which the archive reader takes for the archive's end: readers differ on what the archive holds. np.savez writes no comment: save the archive again.",
            refusal.Message);

        byte[] text = [.. "a note: PK\u0005\u0006 is the end record's signature"u8];
        Assert.Throws<InvalidDataException>(() => Read([.. new byte[10], .. End(7, 500, commentLength: (ushort)text.Length), .. text]));

        // In the record's own fields: a directory at byte 101,010,256 writes the signature's bytes as its offset.
        Assert.Contains("(at byte 10) holds another end-of-directory signature (at byte 26)", Assert.Throws<InvalidDataException>(() => Read([.. new byte[10], .. End(7, 500, offset: 0x06054b50, commentLength: 20), .. new byte[20]])).Message);
    }

    /// <summary>
    /// A signature before the end record that is no record's, in a member's data, is passed over whatever comment length
    /// its bytes would give; a record whose comment runs past the file's end is none the archive reader can read.
    /// </summary>
    [Fact]
    public void OnlyARecordWhoseCommentEndsTheFileHoldsAnother()
    {
        byte[] data = [.. End(1, 46, commentLength: 100), .. new byte[30]];
        Assert.Equal(new ZipDirectory(7, 500), Read([.. data, .. End(7, 500, offset: (uint)data.Length)]));
        Assert.Null(Read([.. End(7, 500, commentLength: 10), .. new byte[3]]));
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
        byte[] file = [.. prefix, .. Zip64Record(onDisk: 3, total: 300_000, bytes: 70_000_000, offset: 100), .. Locator(prefix.Length), .. End(members, bytes, offset)];

        Assert.Equal(new ZipDirectory(300_000, 70_000_000), Read(file));
        Assert.Equal(new ZipDirectory(1, 46), Read([.. prefix, .. Zip64Record(3, 300_000, 70_000_000), .. Locator(prefix.Length), .. End(1, 46, offset: 130)]));
    }

    /// <summary>
    /// A zip64 record that is not there leaves the end record's own counts, the member count marked and all, and a
    /// size marked is no size (the directory takes the bytes before the record): no locator before the end record (nor
    /// room for one), another signature at the locator or at the record, a record past the file's end.
    /// </summary>
    [Fact]
    public void WithoutAZip64RecordTheEndRecordsCountsStand()
    {
        var record = Zip64Record(3, 300_000, 70_000_000);
        byte[] prefix = new byte[8];

        Assert.Equal(new ZipDirectory(Marked16, 8), Read([.. prefix, .. End(Marked16, Marked32)]));
        Assert.Equal(new ZipDirectory(Marked16, 20), Read([.. new byte[20], .. End(Marked16, Marked32)]));
        Assert.Equal(new ZipDirectory(Marked16, 84), Read([.. prefix, .. record, .. Locator(prefix.Length, signature: 0x07064b51), .. End(Marked16, Marked32)]));
        byte[] otherRecord = [.. record];
        otherRecord[0] ^= 1;
        Assert.Equal(new ZipDirectory(Marked16, 84), Read([.. prefix, .. otherRecord, .. Locator(prefix.Length), .. End(Marked16, Marked32)]));

        // The record must lie whole before the file's end: its 56 bytes from 55 before the end would read past it.
        var length = 60 + 20 + 22;
        Assert.Equal(new ZipDirectory(Marked16, 80), Read([.. new byte[60], .. Locator(length - 55), .. End(Marked16, Marked32)]));
        Assert.Equal(new ZipDirectory(Marked16, 80), Read([.. new byte[60], .. Locator(-1), .. End(Marked16, Marked32)]));
    }

    /// <summary>
    /// The directory takes at least the bytes from its offset to the record after it, whatever size it claims: the
    /// archive reader reads every member's entry there. An offset past the record leaves the claim.
    /// </summary>
    [Fact]
    public void TheDirectoryTakesTheBytesFromItsOffsetToTheRecordAfterIt()
    {
        var path = Path.Combine(_folder.FullName, "long.zip");
        using (var file = File.Create(path))
        {
            file.SetLength((64L << 20) + 1);
            file.Position = file.Length;
            file.Write(End(1_100, 46, offset: 0));
        }

        using (var file = new FileStream(path, FileMode.Open, FileAccess.Read))
        {
            Assert.Equal(new ZipDirectory(1_100, (64UL << 20) + 1), ZipDirectory.Read(file));
        }

        byte[] prefix = new byte[100];
        Assert.Equal(new ZipDirectory(3, 90), Read([.. prefix, .. Zip64Record(3, 3, 46, offset: 10), .. Locator(prefix.Length), .. End(Marked16, Marked32)]));
        Assert.Equal(new ZipDirectory(3, 46), Read([.. prefix, .. Zip64Record(3, 3, 46, offset: 101), .. Locator(prefix.Length), .. End(Marked16, Marked32)]));
        Assert.Equal(new ZipDirectory(2, 46), Read([.. prefix, .. End(2, 46, offset: 101)]));
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
}
