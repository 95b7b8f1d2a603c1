using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// Top-k expert ids saved by <c>np.save</c> (or <c>torch</c> through NumPy): a little-endian int32 or
/// int64 array, C order, shaped <c>[steps, tokens, k]</c> or <c>[tokens, k]</c>. Read one step at a time.
/// </summary>
internal sealed partial class NpyIds : IDisposable
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];
    private readonly FileStream _stream;
    private readonly long _dataOffset;
    private readonly int _itemSize;
    private byte[] _buffer = [];

    private NpyIds(FileStream stream, long dataOffset, int itemSize, int steps, int tokens, int topK)
    {
        _stream = stream;
        _dataOffset = dataOffset;
        _itemSize = itemSize;
        Steps = steps;
        Tokens = tokens;
        TopK = topK;
    }

    public int Steps { get; }

    public int Tokens { get; }

    public int TopK { get; }

    public string DType => _itemSize == 4 ? "int32" : "int64";

    /// <exception cref="InvalidDataException">The header, dtype, layout or shape is not what replay reads, or the file is truncated; the message names the file.</exception>
    public static NpyIds Open(string path)
    {
        var stream = File.OpenRead(path);
        try
        {
            var (offset, itemSize, shape) = ReadHeader(stream, path);
            var (steps, tokens, topK) = shape.Length switch
            {
                3 => (shape[0], shape[1], shape[2]),
                2 => (1L, shape[0], shape[1]),
                _ => throw new InvalidDataException($"{path}: shape ({string.Join(", ", shape)}) has {shape.Length} dimensions; replay reads [steps, tokens, k] or [tokens, k]."),
            };
            if (topK < 1 || tokens * topK > int.MaxValue || steps > int.MaxValue)
            {
                throw new InvalidDataException($"{path}: shape ({string.Join(", ", shape)}) is out of range (k >= 1, tokens * k < 2^31 per step).");
            }

            var needed = offset + steps * tokens * topK * itemSize;
            if (stream.Length < needed)
            {
                throw new InvalidDataException($"{path}: truncated: the header promises {needed:N0} bytes, the file has {stream.Length:N0}.");
            }

            return new NpyIds(stream, offset, itemSize, (int)steps, (int)tokens, (int)topK);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Reads one step's <c>tokens * k</c> ids; int64 ids outside the int32 range become -1 (counted invalid).</summary>
    public void ReadStep(int step, Span<int> destination)
    {
        var count = Tokens * TopK;
        var bytes = count * _itemSize;
        if (_buffer.Length < bytes)
        {
            _buffer = new byte[bytes];
        }

        _stream.Position = _dataOffset + (long)step * bytes;
        _stream.ReadExactly(_buffer, 0, bytes);
        var data = _buffer.AsSpan(0, bytes);
        for (var i = 0; i < count; i++)
        {
            if (_itemSize == 4)
            {
                destination[i] = BinaryPrimitives.ReadInt32LittleEndian(data[(i * 4)..]);
            }
            else
            {
                var value = BinaryPrimitives.ReadInt64LittleEndian(data[(i * 8)..]);
                destination[i] = value is >= int.MinValue and <= int.MaxValue ? (int)value : -1;
            }
        }
    }

    /// <summary>The largest id in the file (one pass), for E when the caller does not give it.</summary>
    public int MaxId()
    {
        var ids = new int[Tokens * TopK];
        var max = -1;
        for (var step = 0; step < Steps; step++)
        {
            ReadStep(step, ids);
            foreach (var id in ids)
            {
                max = Math.Max(max, id);
            }
        }

        return max;
    }

    public void Dispose() => _stream.Dispose();

    private static (long Offset, int ItemSize, long[] Shape) ReadHeader(Stream stream, string path)
    {
        Span<byte> prefix = stackalloc byte[10];
        if (stream.ReadAtLeast(prefix, prefix.Length, throwOnEndOfStream: false) < prefix.Length || !prefix[..6].SequenceEqual(Magic))
        {
            throw new InvalidDataException($"{path}: not a NumPy .npy file (no \\x93NUMPY magic).");
        }

        var major = prefix[6];
        int headerLength;
        long offset;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(prefix[8..]);
            offset = 10;
        }
        else if (major is 2 or 3)
        {
            Span<byte> rest = stackalloc byte[2];
            stream.ReadExactly(rest);
            headerLength = (int)BinaryPrimitives.ReadUInt32LittleEndian([.. prefix[8..], .. rest]);
            offset = 12;
        }
        else
        {
            throw new InvalidDataException($"{path}: .npy format version {major} is not supported (1, 2 or 3).");
        }

        var header = new byte[headerLength];
        if (stream.ReadAtLeast(header, headerLength, throwOnEndOfStream: false) < headerLength)
        {
            throw new InvalidDataException($"{path}: truncated header.");
        }

        var text = Encoding.Latin1.GetString(header);
        var descr = DescrPattern().Match(text);
        var fortran = FortranPattern().Match(text);
        var shape = ShapePattern().Match(text);
        if (!descr.Success || !fortran.Success || !shape.Success)
        {
            throw new InvalidDataException($"{path}: unreadable header '{text.Trim()}'.");
        }

        var itemSize = descr.Groups[1].Value switch
        {
            "<i4" or "=i4" => 4,
            "<i8" or "=i8" => 8,
            var other => throw new InvalidDataException($"{path}: dtype '{other}'; replay reads little-endian int32 or int64 ids."),
        };
        if (fortran.Groups[1].Value == "True")
        {
            throw new InvalidDataException($"{path}: Fortran-ordered array; save it in C order (np.ascontiguousarray).");
        }

        var dims = shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(long.Parse).ToArray();
        return (offset + headerLength, itemSize, dims);
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrPattern();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex FortranPattern();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapePattern();
}
