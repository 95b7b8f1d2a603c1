using System.Buffers.Binary;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// What a zip archive's end-of-central-directory record (or its zip64 form) says of the directory: how many members
/// it lists and how many bytes it takes. Read from the archive's last bytes, before <see cref="System.IO.Compression.ZipArchive"/>
/// reads the whole directory into an object a member, so that a directory of millions of members is refused by its count.
/// </summary>
/// <param name="Members">The members the directory lists.</param>
/// <param name="Bytes">The directory's length in bytes.</param>
internal readonly record struct ZipDirectory(ulong Members, ulong Bytes)
{
    private const uint EndSignature = 0x06054b50;
    private const uint Zip64LocatorSignature = 0x07064b50;
    private const uint Zip64EndSignature = 0x06064b50;
    private const int EndLength = 22;
    private const int Zip64LocatorLength = 20;
    private const int Zip64EndLength = 56;

    /// <summary>The directory <paramref name="file"/>'s end record describes; null where it has none (not a zip archive, which the archive reader then names).</summary>
    public static ZipDirectory? Read(FileStream file)
    {
        // The end record is the last 22 bytes but for a comment of at most 65,535 bytes.
        var tail = new byte[(int)Math.Min(file.Length, EndLength + ushort.MaxValue)];
        var start = file.Length - tail.Length;
        file.Position = start;
        file.ReadExactly(tail);
        file.Position = 0;
        for (var at = tail.Length - EndLength; at >= 0; at--)
        {
            var end = tail.AsSpan(at);
            if (BinaryPrimitives.ReadUInt32LittleEndian(end) != EndSignature || at + EndLength + BinaryPrimitives.ReadUInt16LittleEndian(end[20..]) != tail.Length)
            {
                continue;
            }

            var (members, bytes) = (BinaryPrimitives.ReadUInt16LittleEndian(end[10..]), BinaryPrimitives.ReadUInt32LittleEndian(end[12..]));
            return Zip64Marked(end) ? Zip64(file, start + at) ?? new ZipDirectory(members, bytes) : new ZipDirectory(members, bytes);
        }

        return null;
    }

    /// <summary>
    /// Whether any field of the end record is marked as held in the zip64 record (all ones, APPNOTE 4.4.1.4): the
    /// archive reader then takes the zip64 record's counts, whichever field it was, so they are checked here too.
    /// </summary>
    private static bool Zip64Marked(ReadOnlySpan<byte> end) =>
        BinaryPrimitives.ReadUInt16LittleEndian(end[4..]) == ushort.MaxValue
        || BinaryPrimitives.ReadUInt16LittleEndian(end[6..]) == ushort.MaxValue
        || BinaryPrimitives.ReadUInt16LittleEndian(end[8..]) == ushort.MaxValue
        || BinaryPrimitives.ReadUInt16LittleEndian(end[10..]) == ushort.MaxValue
        || BinaryPrimitives.ReadUInt32LittleEndian(end[12..]) == uint.MaxValue
        || BinaryPrimitives.ReadUInt32LittleEndian(end[16..]) == uint.MaxValue;

    /// <summary>The zip64 end record's counts, found through its locator just before the end record at <paramref name="end"/>; null without one.</summary>
    private static ZipDirectory? Zip64(FileStream file, long end)
    {
        if (end < Zip64LocatorLength)
        {
            return null;
        }

        Span<byte> locator = stackalloc byte[Zip64LocatorLength];
        file.Position = end - Zip64LocatorLength;
        file.ReadExactly(locator);
        var record = BinaryPrimitives.ReadInt64LittleEndian(locator[8..]);
        Span<byte> zip64 = stackalloc byte[Zip64EndLength];
        if (BinaryPrimitives.ReadUInt32LittleEndian(locator) != Zip64LocatorSignature || record < 0 || record > file.Length - Zip64EndLength)
        {
            file.Position = 0;
            return null;
        }

        file.Position = record;
        file.ReadExactly(zip64);
        file.Position = 0;
        return BinaryPrimitives.ReadUInt32LittleEndian(zip64) == Zip64EndSignature
            ? new ZipDirectory(BinaryPrimitives.ReadUInt64LittleEndian(zip64[32..]), BinaryPrimitives.ReadUInt64LittleEndian(zip64[40..]))
            : null;
    }
}
