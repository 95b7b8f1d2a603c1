using Microsoft.Win32.SafeHandles;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// Top-k expert ids saved by <c>np.save</c> (or <c>torch</c> through NumPy): a little-endian int8, uint8,
/// int16, uint16, int32 or int64 array, C order, shaped <c>[steps, tokens, k]</c> or <c>[tokens, k]</c>. Read one step at a time.
/// </summary>
/// <remarks>
/// Every size the header claims is checked against the file's length, in checked 64-bit arithmetic,
/// before anything is allocated: a header can say anything, and a small file must not make replay
/// allocate or replay more than it holds.
/// </remarks>
internal sealed class NpyIds : IDisposable
{
    /// <summary>The most ids one step may hold: one record of the library takes at most this many.</summary>
    public const long MaxIdsPerStep = int.MaxValue;

    /// <summary>What int64 ids outside the int32 range become: negative but not -1 (padding), so they count as invalid.</summary>
    public const int OutOfRangeId = int.MinValue;

    private const int ChunkBytes = 1 << 20;
    private readonly SafeFileHandle _file;
    private readonly string _path;
    private readonly long _dataOffset;
    private readonly NpyHeader _header;
    private readonly int _itemSize;
    private byte[] _buffer = [];

    private NpyIds(SafeFileHandle file, string path, NpyHeader header, NpyShape shape)
    {
        _file = file;
        _path = path;
        _header = header;
        _dataOffset = header.DataOffset;
        _itemSize = header.ItemSize;
        Steps = shape.Steps;
        Tokens = shape.Tokens;
        TopK = shape.TopK;
    }

    public int Steps { get; }

    public int Tokens { get; }

    public int TopK { get; }

    /// <summary>Ids per step, <c>Tokens * TopK</c>: at most <see cref="MaxIdsPerStep"/>.</summary>
    public int IdsPerStep => Tokens * TopK;

    public string DType => _header.TypeName;

    /// <exception cref="InvalidDataException">The header, dtype, layout or shape is not what replay reads, or the file is shorter than its header says; the message names the file.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    public static NpyIds Open(string path)
    {
        var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            var length = RandomAccess.GetLength(file);
            var header = NpyHeader.Read(file, length, path);
            if (header.FortranOrder)
            {
                throw new InvalidDataException($"{path}: Fortran-ordered array; save it in C order (np.ascontiguousarray).");
            }

            var shape = Validate(path, header.Shape, header.ItemSize, header.DataOffset, length);
            return new NpyIds(file, path, header, shape);
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
            _ => throw new InvalidDataException($"{path}: shape {shape} has {dims.Count} dimension{(dims.Count == 1 ? "" : "s")}; replay reads [steps, tokens, k] or [tokens, k]."),
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
            for (var i = 0; i < count; i++)
            {
                var value = _header.Value(bytes, i);
                destination[i] = value is >= int.MinValue and <= int.MaxValue ? (int)value : OutOfRangeId;
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
                max = Math.Max(max, _header.Value(bytes, i));
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
        if (NpyHeader.ReadFully(_file, chunk, position) < bytes)
        {
            throw new InvalidDataException($"{_path}: the file ended early (before byte {position + bytes:N0}); was it changed during the replay?");
        }

        return chunk;
    }

}

/// <summary>A replayable shape: every size already checked against the file.</summary>
internal readonly record struct NpyShape(int Steps, int Tokens, int TopK);
