using System.Buffers.Binary;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// What a zip archive's end-of-central-directory record (or its zip64 form) says of the directory: how many members
/// it lists and how many bytes it takes. Read from the archive's last bytes, before <see cref="System.IO.Compression.ZipArchive"/>
/// reads the whole directory into an object a member, so that a directory of millions of members is refused by its count.
/// </summary>
/// <remarks>
/// The record read is the one the archive reader takes: the last signature in the last 65,557 bytes, whatever follows
/// its comment (a byte appended to the file), and its zip64 record wherever a field of it is marked as held there.
/// Where that signature lies in another end record, one whose comment ends the file, readers differ on which ends the
/// archive, and it is refused. The directory's bytes are the larger of what it claims and the bytes from its offset to
/// the record after it: the archive reader reads every member's entry whatever the claim says.
/// </remarks>
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

    /// <summary>The directory <paramref name="file"/>'s end record describes; null where it has none the archive reader can read (which it then names).</summary>
    /// <exception cref="InvalidDataException">The last end-record signature lies in another end record, one whose comment ends the file; the message, without the file's name, says so.</exception>
    public static ZipDirectory? Read(FileStream file)
    {
        // The end record is the last 22 bytes but for a comment of at most 65,535 bytes.
        var tail = new byte[(int)Math.Min(file.Length, EndLength + ushort.MaxValue)];
        var start = file.Length - tail.Length;
        file.Position = start;
        file.ReadExactly(tail);
        file.Position = 0;
        var at = LastSignature(tail, tail.Length - EndLength);
        if (at >= 0 && EnclosingRecord(tail, at) is { } enclosing)
        {
            throw new InvalidDataException(
                $"its end-of-directory record (at byte {start + enclosing:N0}) holds another end-of-directory signature (at byte {start + at:N0}), which the archive reader takes for the archive's end: readers differ on what the archive holds. np.savez writes no comment: save the archive again.");
        }

        if (at < 0 || at + EndLength + CommentLength(tail, at) > tail.Length)
        {
            return null;
        }

        var end = tail.AsSpan(at);
        var (members, bytes, offset) = (BinaryPrimitives.ReadUInt16LittleEndian(end[10..]), BinaryPrimitives.ReadUInt32LittleEndian(end[12..]), BinaryPrimitives.ReadUInt32LittleEndian(end[16..]));
        var (directoryEnd, claimed) = (start + at, bytes == uint.MaxValue ? 0UL : bytes);
        if (Zip64Marked(end) && Zip64(file, start + at) is var (zip64Members, zip64Bytes, zip64Offset, record))
        {
            return new ZipDirectory(zip64Members, Math.Max(zip64Bytes, Span(zip64Offset, record)));
        }

        return new ZipDirectory(members, Math.Max(claimed, Span(offset, directoryEnd)));
    }

    /// <summary>The bytes from the directory's <paramref name="offset"/> to the record after it, at <paramref name="end"/>; 0 for an offset past it.</summary>
    private static ulong Span(ulong offset, long end) => offset <= (ulong)end ? (ulong)end - offset : 0;

    /// <summary>The last end-record signature at or before <paramref name="last"/>; -1 for none.</summary>
    private static int LastSignature(byte[] tail, int last)
    {
        for (var at = last; at >= 0; at--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(at)) == EndSignature)
            {
                return at;
            }
        }

        return -1;
    }

    /// <summary>An end record before <paramref name="at"/> whose comment ends the file, and so holds the signature there in its fields or comment; null for none.</summary>
    private static int? EnclosingRecord(byte[] tail, int at)
    {
        for (var before = LastSignature(tail, at - 1); before >= 0; before = LastSignature(tail, before - 1))
        {
            if (before + EndLength + CommentLength(tail, before) == tail.Length)
            {
                return before;
            }
        }

        return null;
    }

    private static int CommentLength(byte[] tail, int at) => BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(at + 20));

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

    /// <summary>
    /// The zip64 end record's members, bytes and offset, and where it lies, found through its locator just before the
    /// end record at <paramref name="end"/>; null without one.
    /// </summary>
    private static (ulong Members, ulong Bytes, ulong Offset, long At)? Zip64(FileStream file, long end)
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
            ? (BinaryPrimitives.ReadUInt64LittleEndian(zip64[32..]), BinaryPrimitives.ReadUInt64LittleEndian(zip64[40..]), BinaryPrimitives.ReadUInt64LittleEndian(zip64[48..]), record)
            : null;
    }
}
