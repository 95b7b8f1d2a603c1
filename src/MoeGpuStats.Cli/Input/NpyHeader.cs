using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// The header of a NumPy <c>.npy</c> file (format versions 1 to 3) of little-endian integer
/// values (<see cref="NpyType"/>): where the data starts, the item size, the shape as <c>ast.literal_eval</c> reads it, and
/// the order. Reads at most <see cref="MaxHeaderBytes"/> whatever the header claims.
/// </summary>
/// <param name="DataOffset">The byte offset of the first value.</param>
/// <param name="Type">The values' integer type.</param>
/// <param name="Shape">The dimensions, each non-negative; their product is not checked here.</param>
/// <param name="FortranOrder">Whether the array is stored in Fortran (column-major) order.</param>
internal sealed partial record NpyHeader(long DataOffset, NpyType Type, long[] Shape, bool FortranOrder)
{
    /// <summary>Bytes per value.</summary>
    public int ItemSize => Type switch
    {
        NpyType.Int8 or NpyType.UInt8 => 1,
        NpyType.Int16 or NpyType.UInt16 => 2,
        NpyType.Int32 => 4,
        _ => 8,
    };

    /// <summary>The type's NumPy name: int16, uint8, ...</summary>
    public string TypeName => Type.ToString().ToLowerInvariant();

    /// <summary>
    /// Value <paramref name="index"/> of <paramref name="data"/>, values of this header's type one after
    /// another; a uint64 past <see cref="long.MaxValue"/> reads as <see cref="long.MaxValue"/> (an invalid id,
    /// a load <see cref="IsPastInt64"/> tells apart).
    /// </summary>
    public long Value(ReadOnlySpan<byte> data, int index) => Type switch
    {
        NpyType.UInt64 => (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(data[(index * 8)..]), long.MaxValue),
        NpyType.Int8 => (sbyte)data[index],
        NpyType.UInt8 => data[index],
        NpyType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(data[(index * 2)..]),
        NpyType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(data[(index * 2)..]),
        NpyType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(data[(index * 4)..]),
        _ => BinaryPrimitives.ReadInt64LittleEndian(data[(index * 8)..]),
    };

    /// <summary>
    /// The largest value of this unsigned type as text (<c>255</c>), which −1 becomes when ids padded with it are
    /// saved as that type (<c>np.array([-1]).astype(np.uint8)</c>); null for a signed type.
    /// </summary>
    public string? UnsignedMax => Type switch
    {
        NpyType.UInt8 => "255",
        NpyType.UInt16 => "65,535",
        NpyType.UInt64 => "18,446,744,073,709,551,615",
        _ => null,
    };

    /// <summary>Whether value <paramref name="index"/> is the largest value of an unsigned type (<see cref="UnsignedMax"/>).</summary>
    public bool IsUnsignedMax(ReadOnlySpan<byte> data, int index) => Type switch
    {
        NpyType.UInt8 => data[index] == byte.MaxValue,
        NpyType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(data[(index * 2)..]) == ushort.MaxValue,
        NpyType.UInt64 => BinaryPrimitives.ReadUInt64LittleEndian(data[(index * 8)..]) == ulong.MaxValue,
        _ => false,
    };

    /// <summary>Whether value <paramref name="index"/> is a uint64 past <see cref="long.MaxValue"/>, which <see cref="Value"/> cannot hold.</summary>
    public bool IsPastInt64(ReadOnlySpan<byte> data, int index) =>
        Type == NpyType.UInt64 && BinaryPrimitives.ReadUInt64LittleEndian(data[(index * 8)..]) > long.MaxValue;

    /// <summary>NumPy itself refuses headers over 10,000 bytes unless told otherwise; a shape never needs more.</summary>
    public const int MaxHeaderBytes = 65_536;

    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>The six bytes every .npy file starts with.</summary>
    public static ReadOnlySpan<byte> MagicBytes => Magic;

    /// <summary>Reads until <paramref name="destination"/> is full or the file ends; returns the bytes read.</summary>
    public static int ReadFully(SafeFileHandle file, Span<byte> destination, long position)
    {
        var read = 0;
        while (read < destination.Length && RandomAccess.Read(file, destination[read..], position + read) is var n and > 0)
        {
            read += n;
        }

        return read;
    }

    /// <summary>The preamble and header of the .npy file <paramref name="file"/> of <paramref name="length"/> bytes.</summary>
    /// <exception cref="InvalidDataException">As <see cref="Read(ReadAt, long, string)"/>.</exception>
    public static NpyHeader Read(SafeFileHandle file, long length, string path) =>
        Read((destination, position) => ReadFully(file, destination, position), length, path);

    /// <summary>
    /// The preamble and header of a .npy array of <paramref name="length"/> bytes that <paramref name="read"/>
    /// reads: a file, or a member of an .npz archive. The reads go forward only, so an archive member's
    /// stream is read once.
    /// </summary>
    /// <exception cref="InvalidDataException">Not a .npy file, a header longer than the file or than <see cref="MaxHeaderBytes"/>, an unreadable header, a dtype other than a little-endian integer of <see cref="NpyType"/>, or a shape that is not a tuple of whole numbers; the message names <paramref name="path"/>.</exception>
    public static NpyHeader Read(ReadAt read, long length, string path)
    {
        Span<byte> prefix = stackalloc byte[12];
        var got = read(prefix[..10], 0);
        if (got is > 0 and < 10 && Magic.AsSpan().StartsWith(prefix[..Math.Min(got, Magic.Length)]))
        {
            throw new InvalidDataException($"{path}: truncated: the file ends inside the .npy preamble ({Counted.Of(got, "byte")}).");
        }

        if (got < 10 || !prefix[..6].SequenceEqual(Magic))
        {
            throw new InvalidDataException(MoeGpuStats.Serialization.CompressedData.Hint(prefix[..got]) is { Length: > 0 } compressed
                ? $"{path}: not a NumPy .npy file{compressed}."
                : $"{path}: not a NumPy .npy file (no \\x93NUMPY magic).");
        }

        var major = prefix[6];
        long headerLength, offset;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(prefix[8..]);
            offset = 10;
        }
        else if (major is 2 or 3)
        {
            if (read(prefix[10..], 10) < 2)
            {
                throw new InvalidDataException($"{path}: truncated: the file ends inside the .npy preamble ({length:N0} bytes).");
            }

            headerLength = BinaryPrimitives.ReadUInt32LittleEndian(prefix[8..]);
            offset = 12;
        }
        else
        {
            throw new InvalidDataException($"{path}: .npy format version {major} is not supported (1, 2 or 3).");
        }

        // Only an archive's directory can claim fewer bytes than were read: a file's length is what it holds.
        if (length < offset)
        {
            throw new InvalidDataException($"{path}: truncated: {Counted.Of(length, "byte")}, fewer than the .npy preamble's {offset}.");
        }

        if (offset + headerLength > length)
        {
            throw new InvalidDataException($"{path}: truncated: the header claims {headerLength:N0} bytes, the file has {length - offset:N0} after the preamble.");
        }

        if (headerLength > MaxHeaderBytes)
        {
            throw new InvalidDataException($"{path}: a header of {headerLength:N0} bytes; an array of ids or loads has one of a few hundred (at most {MaxHeaderBytes:N0}).");
        }

        var header = new byte[headerLength];
        if (read(header, offset) < headerLength)
        {
            throw new InvalidDataException($"{path}: truncated header.");
        }

        var text = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(header);
        var descr = DescrPattern().Match(text);
        var fortran = FortranPattern().Match(text);
        var shape = ShapePattern().Match(text);
        if (!descr.Success || !fortran.Success || !shape.Success)
        {
            throw new InvalidDataException($"{path}: unreadable header '{Printable(text)}' (expected 'descr', 'fortran_order' and 'shape').");
        }

        // NumPy reads a repeated key's last value, this reader its first: such a header (np.save never writes one) is refused.
        if (descr.NextMatch().Success || fortran.NextMatch().Success || shape.NextMatch().Success)
        {
            throw new InvalidDataException($"{path}: header '{Printable(text)}' names 'descr', 'fortran_order' or 'shape' twice; np.save writes each once.");
        }

        // Byte order '<' (little) or '=' or none (native: little on every machine .NET runs this on); a single byte has
        // none, '|' (or any of the three). np.load also reads a type's name ('int64'), which other writers put there.
        var type = descr.Groups[1].Value switch
        {
            "|i1" or "<i1" or "=i1" or ">i1" or "i1" or "int8" => NpyType.Int8,
            "|u1" or "<u1" or "=u1" or ">u1" or "u1" or "uint8" => NpyType.UInt8,
            "<i2" or "=i2" or "i2" or "int16" => NpyType.Int16,
            "<u2" or "=u2" or "u2" or "uint16" => NpyType.UInt16,
            "<i4" or "=i4" or "i4" or "int32" => NpyType.Int32,
            "<i8" or "=i8" or "i8" or "int64" => NpyType.Int64,
            "<u8" or "=u8" or "u8" or "uint64" => NpyType.UInt64,
            var other => throw new InvalidDataException(
                $"{path}: dtype '{Printable(other)}'; expected little-endian integers: int8, uint8, int16, uint16, int32, int64 or uint64{BigEndianHint(other)}."),
        };
        return new NpyHeader(offset + headerLength, type, ParseShape(shape.Groups[1].Value, path), fortran.Groups[1].Value == "True");
    }

    /// <summary>For big-endian integers, how NumPy writes them little-endian; else nothing.</summary>
    private static string BigEndianHint(string dtype) =>
        dtype is ">i2" or ">u2" or ">i4" or ">i8" or ">u8" ? $" (save it as a.astype('<{dtype[1..]}'))" : "";

    /// <summary>A Python tuple of non-negative integers, as <c>ast.literal_eval</c> reads it (Python 2's <c>4L</c> included).</summary>
    private static long[] ParseShape(string tuple, string path)
    {
        var parts = tuple.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length > 1 && parts[^1].Length == 0)
        {
            parts = parts[..^1];
        }

        if (parts is [""])
        {
            parts = [];
        }

        var dims = new long[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            var digits = parts[i].EndsWith('L') || parts[i].EndsWith('l') ? parts[i][..^1] : parts[i];
            if (digits.StartsWith('-') && long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var signed))
            {
                // Python reads -0 (and -00) as 0, as np.load does.
                digits = signed < 0 ? throw new InvalidDataException($"{path}: shape ({Printable(tuple)}): dimension {parts[i]} is negative.") : digits[1..];
            }

            if (digits.Length == 0 || !digits.All(char.IsAsciiDigit))
            {
                throw new InvalidDataException($"{path}: shape ({Printable(tuple)}): dimension '{Printable(parts[i])}' is not a whole number.");
            }

            // Python reads 0, 00 and 7 but not 007 (the octal spelling it dropped), and neither does np.load.
            if (digits.Length > 1 && digits[0] == '0' && digits.TrimStart('0').Length > 0)
            {
                throw new InvalidDataException($"{path}: shape ({Printable(tuple)}): dimension {parts[i]} has leading zeros, which Python (and so np.load) refuses.");
            }

            if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]))
            {
                throw new InvalidDataException($"{path}: shape ({Printable(tuple)}): dimension {parts[i]} is larger than any file holds.");
            }
        }

        return dims;
    }

    /// <summary>
    /// Refuses a file (or archive member) whose length is not its header's plus its array's
    /// (<paramref name="needed"/> bytes): shorter, it is truncated; longer, the header's shape or the
    /// file is corrupt, since np.save writes nothing after the array (a shape edited smaller would
    /// otherwise read a part of the data as the whole).
    /// </summary>
    public static void CheckLength(string path, string shape, long needed, long length)
    {
        if (length < needed)
        {
            throw new InvalidDataException($"{path}: truncated: shape {shape} needs {needed:N0} bytes, the file has {length:N0}.");
        }

        if (length > needed)
        {
            throw new InvalidDataException($"{path}: shape {shape} takes {needed:N0} bytes with its header, and {length:N0} are there: the header or the data is corrupt (np.save writes nothing after the array).");
        }
    }

    /// <summary>Header text cut to one short line, what a terminal acts on escaped (<see cref="UnsafeText.Escaped"/>), so an error stays one line.</summary>
    public static string Printable(string text) => UnsafeText.Escaped(ShortText.Of(text.Trim(), 120));

    [GeneratedRegex(@"['""]descr['""]\s*:\s*['""]([^'""]*)['""]")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"['""]fortran_order['""]\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"['""]shape['""]\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}

/// <summary>Reads bytes from <paramref name="position"/> until <paramref name="destination"/> is full or the data ends; returns the bytes read.</summary>
internal delegate int ReadAt(Span<byte> destination, long position);

/// <summary>The integer types a .npy file of ids or loads may hold (vLLM returns routed experts as int16).</summary>
internal enum NpyType
{
    Int8,
    UInt8,
    Int16,
    UInt16,
    Int32,
    Int64,

    /// <summary>What a model's <c>window_load()</c> returns in Python, and loads saved from it.</summary>
    UInt64,
}
