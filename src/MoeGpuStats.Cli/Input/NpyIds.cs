using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Win32.SafeHandles;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// Top-k expert ids saved by <c>np.save</c> (or <c>torch</c> through NumPy): a little-endian int32 or
/// int64 array, C order, shaped <c>[steps, tokens, k]</c> or <c>[tokens, k]</c>. Read one step at a time.
/// </summary>
/// <remarks>
/// Every size the header claims is checked against the file's length, in checked 64-bit arithmetic,
/// before anything is allocated: a header can say anything, and a small file must not make replay
/// allocate or replay more than it holds.
/// </remarks>
internal sealed partial class NpyIds : IDisposable
{
    /// <summary>The most ids one step may hold: one record of the library takes at most this many.</summary>
    public const long MaxIdsPerStep = int.MaxValue;

    /// <summary>NumPy itself refuses headers over 10,000 bytes unless told otherwise; a shape never needs more.</summary>
    public const int MaxHeaderBytes = 65_536;

    /// <summary>What int64 ids outside the int32 range become: negative but not -1 (padding), so they count as invalid.</summary>
    public const int OutOfRangeId = int.MinValue;

    private const int ChunkBytes = 1 << 20;
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
    private readonly SafeFileHandle _file;
    private readonly string _path;
    private readonly long _dataOffset;
    private readonly int _itemSize;
    private byte[] _buffer = [];

    private NpyIds(SafeFileHandle file, string path, long dataOffset, int itemSize, NpyShape shape)
    {
        _file = file;
        _path = path;
        _dataOffset = dataOffset;
        _itemSize = itemSize;
        Steps = shape.Steps;
        Tokens = shape.Tokens;
        TopK = shape.TopK;
    }

    public int Steps { get; }

    public int Tokens { get; }

    public int TopK { get; }

    /// <summary>Ids per step, <c>Tokens * TopK</c>: at most <see cref="MaxIdsPerStep"/>.</summary>
    public int IdsPerStep => Tokens * TopK;

    public string DType => _itemSize == 4 ? "int32" : "int64";

    /// <exception cref="InvalidDataException">The header, dtype, layout or shape is not what replay reads, or the file is shorter than its header says; the message names the file.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    public static NpyIds Open(string path)
    {
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            var length = RandomAccess.GetLength(file);
            var (offset, itemSize, dims) = ReadHeader(file, length, path);
            var shape = Validate(path, dims, itemSize, offset, length);
            return new NpyIds(file, path, offset, itemSize, shape);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Checks that <paramref name="dims"/> of <paramref name="itemSize"/>-byte ids starting at
    /// <paramref name="dataOffset"/> fit in a file of <paramref name="fileLength"/> bytes and in what replay reads.
    /// </summary>
    /// <exception cref="InvalidDataException">They do not; the message says why, in the file's terms.</exception>
    internal static NpyShape Validate(string path, IReadOnlyList<long> dims, int itemSize, long dataOffset, long fileLength)
    {
        var shape = $"({string.Join(", ", dims)}{(dims.Count == 1 ? "," : "")})";
        var (steps, tokens, topK) = dims.Count switch
        {
            3 => (dims[0], dims[1], dims[2]),
            2 => (1L, dims[0], dims[1]),
            _ => throw new InvalidDataException($"{path}: shape {shape} has {dims.Count} dimensions; replay reads [steps, tokens, k] or [tokens, k]."),
        };
        if (dims.FirstOrDefault(d => d < 0) is var negative and < 0)
        {
            throw new InvalidDataException($"{path}: shape {shape}: dimension {negative} is negative.");
        }

        if (steps == 0 || tokens == 0 || topK == 0)
        {
            throw new InvalidDataException($"{path}: shape {shape} holds no ids; nothing to replay.");
        }

        long ids, needed;
        try
        {
            ids = checked(steps * tokens * topK);
            needed = checked(dataOffset + (ids * itemSize));
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{path}: shape {shape} claims more ids than any file holds (the file has {fileLength:N0} bytes).");
        }

        if (fileLength < needed)
        {
            throw new InvalidDataException($"{path}: truncated: shape {shape} needs {needed:N0} bytes, the file has {fileLength:N0}.");
        }

        if (tokens * topK > MaxIdsPerStep)
        {
            throw new InvalidDataException($"{path}: shape {shape} has {tokens * topK:N0} ids per step; replay reads at most {MaxIdsPerStep:N0} (reshape to more, smaller steps).");
        }

        if (steps > int.MaxValue)
        {
            throw new InvalidDataException($"{path}: shape {shape} has {steps:N0} steps; replay reads at most {int.MaxValue:N0}.");
        }

        return new NpyShape((int)steps, (int)tokens, (int)topK);
    }

    /// <summary>Reads one step's <see cref="IdsPerStep"/> ids into the start of <paramref name="destination"/>.</summary>
    public void ReadStep(int step, Span<int> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(step, Steps);
        ReadIds((long)step * IdsPerStep, destination[..IdsPerStep]);
    }

    /// <summary>
    /// Reads <c>destination.Length</c> ids starting at id <paramref name="first"/> of the file (C order);
    /// int64 ids outside the int32 range become <see cref="OutOfRangeId"/> (counted invalid, never padding).
    /// </summary>
    internal void ReadIds(long first, Span<int> destination)
    {
        var position = _dataOffset + (first * _itemSize);
        while (!destination.IsEmpty)
        {
            var count = Math.Min(destination.Length, ChunkBytes / _itemSize);
            var bytes = ReadChunk(position, count);
            if (_itemSize == 4)
            {
                for (var i = 0; i < count; i++)
                {
                    destination[i] = BinaryPrimitives.ReadInt32LittleEndian(bytes[(i * 4)..]);
                }
            }
            else
            {
                for (var i = 0; i < count; i++)
                {
                    var value = BinaryPrimitives.ReadInt64LittleEndian(bytes[(i * 8)..]);
                    destination[i] = value is >= int.MinValue and <= int.MaxValue ? (int)value : OutOfRangeId;
                }
            }

            position += (long)count * _itemSize;
            destination = destination[count..];
        }
    }

    /// <summary>
    /// The largest id in the file as saved (int64 ids keep their value), for E when the caller does not
    /// give it. Negative ids (-1 is padding, others are invalid) never count; -1 when there is no other id.
    /// </summary>
    public long MaxId()
    {
        var remaining = (long)Steps * IdsPerStep;
        var position = _dataOffset;
        var max = -1L;
        while (remaining > 0)
        {
            var count = (int)Math.Min(remaining, ChunkBytes / _itemSize);
            var bytes = ReadChunk(position, count);
            for (var i = 0; i < count; i++)
            {
                var id = _itemSize == 4 ? BinaryPrimitives.ReadInt32LittleEndian(bytes[(i * 4)..]) : BinaryPrimitives.ReadInt64LittleEndian(bytes[(i * 8)..]);
                max = Math.Max(max, id);
            }

            position += (long)count * _itemSize;
            remaining -= count;
        }

        return max;
    }

    public void Dispose() => _file.Dispose();

    private ReadOnlySpan<byte> ReadChunk(long position, int count)
    {
        var bytes = count * _itemSize;
        if (_buffer.Length < bytes)
        {
            _buffer = new byte[bytes];
        }

        var chunk = _buffer.AsSpan(0, bytes);
        if (ReadFully(_file, chunk, position) < bytes)
        {
            throw new InvalidDataException($"{_path}: the file ended early (before byte {position + bytes:N0}); was it changed during the replay?");
        }

        return chunk;
    }

    private static int ReadFully(SafeFileHandle file, Span<byte> destination, long position)
    {
        var read = 0;
        while (read < destination.Length && RandomAccess.Read(file, destination[read..], position + read) is var n and > 0)
        {
            read += n;
        }

        return read;
    }

    private static (long Offset, int ItemSize, long[] Shape) ReadHeader(SafeFileHandle file, long length, string path)
    {
        Span<byte> prefix = stackalloc byte[12];
        var got = ReadFully(file, prefix, 0);
        if (got < 10 || !prefix[..6].SequenceEqual(Magic))
        {
            throw new InvalidDataException($"{path}: not a NumPy .npy file (no \\x93NUMPY magic).");
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
            if (got < 12)
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

        if (offset + headerLength > length)
        {
            throw new InvalidDataException($"{path}: truncated: the header claims {headerLength:N0} bytes, the file has {length - offset:N0} after the preamble.");
        }

        if (headerLength > MaxHeaderBytes)
        {
            throw new InvalidDataException($"{path}: a header of {headerLength:N0} bytes; an array replay reads has one of a few hundred (at most {MaxHeaderBytes:N0}).");
        }

        var header = new byte[headerLength];
        if (ReadFully(file, header, offset) < headerLength)
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

        var itemSize = descr.Groups[1].Value switch
        {
            "<i4" or "=i4" => 4,
            "<i8" or "=i8" => 8,
            var other => throw new InvalidDataException($"{path}: dtype '{Printable(other)}'; replay reads little-endian int32 or int64 ids."),
        };
        if (fortran.Groups[1].Value == "True")
        {
            throw new InvalidDataException($"{path}: Fortran-ordered array; save it in C order (np.ascontiguousarray).");
        }

        return (offset + headerLength, itemSize, ParseShape(shape.Groups[1].Value, path));
    }

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
            if (digits.StartsWith('-') && long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
            {
                throw new InvalidDataException($"{path}: shape ({Printable(tuple)}): dimension {parts[i]} is negative.");
            }

            if (digits.Length == 0 || !digits.All(char.IsAsciiDigit))
            {
                throw new InvalidDataException($"{path}: shape ({Printable(tuple)}): dimension '{Printable(parts[i])}' is not a whole number.");
            }

            if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]))
            {
                throw new InvalidDataException($"{path}: shape ({Printable(tuple)}): dimension {parts[i]} is larger than any file holds.");
            }
        }

        return dims;
    }

    /// <summary>Header text cut to one short line with control characters shown as '?', so an error stays one line.</summary>
    private static string Printable(string text)
    {
        var trimmed = text.Trim();
        var shown = trimmed.Length > 120 ? trimmed[..120] + "..." : trimmed;
        return string.Create(shown.Length, shown, (span, source) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = char.IsControl(source[i]) ? '?' : source[i];
            }
        });
    }

    [GeneratedRegex(@"['""]descr['""]\s*:\s*['""]([^'""]*)['""]")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"['""]fortran_order['""]\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"['""]shape['""]\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}

/// <summary>A replayable shape: every size already checked against the file.</summary>
internal readonly record struct NpyShape(int Steps, int Tokens, int TopK);
