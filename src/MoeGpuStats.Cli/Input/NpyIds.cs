namespace MoeGpuStats.Cli.Input;

/// <summary>
/// Top-k expert ids saved by <c>np.save</c> (or <c>torch</c> through NumPy): a little-endian int8, uint8,
/// int16, uint16, int32, int64 or uint64 array, C order, in one of the <see cref="IdLayout"/>s. Read one step at a
/// time, as <c>[layers, tokens, k]</c> whatever the file's order. The same array as a member of an .npz
/// archive is read through <see cref="Open(NpyBytes, string, Func{string, IReadOnlyList{long}, IdLayout}, IReadOnlyList{IdLayout})"/>.
/// </summary>
/// <remarks>
/// Every size the header claims is checked against the file's length, in checked 64-bit arithmetic,
/// before anything is allocated: a header can say anything, and a small file must not make replay
/// allocate or replay more than it holds.
/// </remarks>
internal sealed class NpyIds : IRoutingTrace
{
    /// <summary>The most ids one step may hold: one record of the library takes at most this many.</summary>
    public const long MaxIdsPerStep = int.MaxValue;

    /// <summary>What int64 ids outside the int32 range become: negative but not -1 (padding), so they count as invalid.</summary>
    public const int OutOfRangeId = int.MinValue;

    private const int ChunkBytes = 1 << 20;
    private readonly NpyBytes _bytes;
    private readonly long _dataOffset;
    private readonly NpyHeader _header;
    private readonly int _itemSize;

    // One chunk buffer per thread, shared by every array it reads: an archive of thousands of members would
    // otherwise keep a buffer per member for the whole replay. A chunk is converted before the next is read.
    [ThreadStatic]
    private static byte[]? t_chunk;

    private NpyIds(NpyBytes bytes, string path, NpyHeader header, NpyShape shape)
    {
        Layout = shape.Layout;
        Path = path;
        _bytes = bytes;
        _header = header;
        _dataOffset = header.DataOffset;
        _itemSize = header.ItemSize;
        Steps = shape.Steps;
        Layers = shape.Layers;
        Tokens = shape.Tokens;
        TopK = shape.TopK;
    }

    public IdLayout Layout { get; }

    /// <summary>The array's name in messages: the file, or <c>trace.npz[arr_0]</c>.</summary>
    public string Path { get; }

    public int Steps { get; }

    /// <summary>MoE layers per step; 1 for a layout without a layers axis.</summary>
    public int Layers { get; }

    /// <summary>Tokens per layer.</summary>
    public int Tokens { get; }

    public int TopK { get; }

    /// <summary>Ids per step, <c>Layers * Tokens * TopK</c>: at most <see cref="MaxIdsPerStep"/>.</summary>
    public int IdsPerStep => Layers * Tokens * TopK;

    public string DType => _header.TypeName;

    /// <summary>The shape as NumPy prints it, for messages: <c>(5, 6, 2)</c>.</summary>
    public string Shape => NpyShape.Describe(_header.Shape);

    string IRoutingTrace.Axes => Layout.Name;

    string IRoutingTrace.LayersHint => "--layout names the axis that holds them";

    IdLayout? IRoutingTrace.Layout => Layout;

    string IRoutingTrace.IdType => DType;

    bool IRoutingTrace.HasLayers => Layout.HasLayers;

    int IRoutingTrace.MaxTokens => Tokens;

    IReadOnlyList<string> IRoutingTrace.Notes => [];

    string? IRoutingTrace.UnsignedPadding(long maxId) => UnsignedPaddingText(DType, UnsignedMax, maxId);

    string? IRoutingTrace.UnsignedPaddingWarning() => UnsignedPaddingWarning(UnsignedMaxIds, DType, UnsignedMax);

    /// <summary>The warning for <paramref name="ids"/> replayed ids at <paramref name="unsignedMax"/>, the largest <paramref name="dtype"/>; null for none.</summary>
    internal static string? UnsignedPaddingWarning(long ids, string dtype, string? unsignedMax) =>
        ids == 0
            ? null
            : $"warning: {Counted.Of(ids, "id")} replayed {(ids == 1 ? "is" : "are")} {unsignedMax}, {UnsignedPaddingText(dtype, unsignedMax, -1)}: if {(ids == 1 ? "it is" : "they are")} padding, save the ids in a signed type (int8 to int64); here {(ids == 1 ? "it counts" : "they count")} as that expert's, or as invalid past --experts.";

    /// <summary>
    /// What <paramref name="unsignedMax"/>, the largest <paramref name="dtype"/>, likely is in a file of ids (−1 padding
    /// saved unsigned), where <paramref name="maxId"/> is that value or −1 (any); null otherwise.
    /// </summary>
    internal static string? UnsignedPaddingText(string dtype, string? unsignedMax, long maxId) =>
        unsignedMax is null || (maxId >= 0 && maxId.ToString("N0", System.Globalization.CultureInfo.InvariantCulture) != unsignedMax)
            ? null
            : $"the largest {dtype}, which -1 padding becomes when saved as {dtype}";
    int IRoutingTrace.TokensAt(int step) => Tokens;

    /// <param name="path">The file.</param>
    /// <param name="layout">The order of its axes (<c>--layout</c>); null for the default of its rank (<see cref="IdLayout.For(string, IReadOnlyList{long}, IdLayout?)"/>).</param>
    /// <exception cref="InvalidDataException">The header, dtype, memory order or shape is not what replay reads, or the file is shorter than its header says; the message names the file.</exception>
    /// <exception cref="IdLayoutException">A 3-D file without <paramref name="layout"/>, or a layout of another rank.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    public static NpyIds Open(string path, IdLayout? layout) =>
        Open(new NpyFileBytes(File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read), path), path, (name, dims) => IdLayout.For(name, dims, layout), IdLayout.All);

    /// <summary>The array in <paramref name="bytes"/>, which it owns from now on (disposed also when this throws).</summary>
    /// <param name="bytes">The array's bytes: a file or an archive member.</param>
    /// <param name="path">The array's name in messages: the file, or <c>trace.npz[arr_0]</c>.</param>
    /// <param name="layout">Chooses the layout of a shape (a rank <see cref="IdLayout.CheckRank"/> passed), or throws <see cref="IdLayoutException"/>.</param>
    /// <param name="readable">The layouts <paramref name="layout"/> chooses from, whose ranks a shape must have.</param>
    /// <exception cref="InvalidDataException">As <see cref="Open(string, IdLayout?)"/>.</exception>
    /// <exception cref="IdLayoutException">As <see cref="Open(string, IdLayout?)"/>.</exception>
    internal static NpyIds Open(NpyBytes bytes, string path, Func<string, IReadOnlyList<long>, IdLayout> layout, IReadOnlyList<IdLayout> readable)
    {
        try
        {
            var length = bytes.Length;
            var header = NpyHeader.Read(bytes.Read, length, path);
            if (header.FortranOrder)
            {
                throw new InvalidDataException($"{path}: Fortran-ordered array; save it in C order (np.ascontiguousarray).");
            }

            var shape = Validate(path, header.Shape, layout, readable, header.ItemSize, header.DataOffset, length);
            return new NpyIds(bytes, path, header, shape);
        }
        catch
        {
            bytes.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Checks that <paramref name="dims"/> of <paramref name="itemSize"/>-byte ids starting at
    /// <paramref name="dataOffset"/> fit in a file of <paramref name="fileLength"/> bytes and in what replay
    /// reads, in <paramref name="layout"/>. A broken file is reported as broken before its layout is asked for.
    /// </summary>
    /// <param name="path">The file, for messages.</param>
    /// <param name="dims">The shape its header claims.</param>
    /// <param name="layout">Chooses the order of its axes from its shape (<see cref="IdLayout.For(string, IReadOnlyList{long}, IdLayout?)"/> with <c>--layout</c>).</param>
    /// <param name="itemSize">Bytes per id.</param>
    /// <param name="dataOffset">Where the ids start.</param>
    /// <param name="fileLength">The file's length in bytes.</param>
    /// <exception cref="InvalidDataException">They do not; the message says why, in the file's terms.</exception>
    /// <exception cref="IdLayoutException">No layout given for a 3-D file, or one of another rank.</exception>
    internal static NpyShape Validate(string path, IReadOnlyList<long> dims, IdLayout? layout, int itemSize, long dataOffset, long fileLength) =>
        Validate(path, dims, (name, shape) => IdLayout.For(name, shape, layout), IdLayout.All, itemSize, dataOffset, fileLength);

    /// <inheritdoc cref="Validate(string, IReadOnlyList{long}, IdLayout?, int, long, long)"/>
    /// <param name="path">The file, for messages.</param>
    /// <param name="dims">The shape its header claims.</param>
    /// <param name="layout">Chooses the order of its axes from its shape, or throws <see cref="IdLayoutException"/>.</param>
    /// <param name="readable">The layouts <paramref name="layout"/> chooses from, whose ranks a shape must have.</param>
    /// <param name="itemSize">Bytes per id.</param>
    /// <param name="dataOffset">Where the ids start.</param>
    /// <param name="fileLength">The file's length in bytes.</param>
    internal static NpyShape Validate(string path, IReadOnlyList<long> dims, Func<string, IReadOnlyList<long>, IdLayout> layout, IReadOnlyList<IdLayout> readable, int itemSize, long dataOffset, long fileLength)
    {
        var shape = NpyShape.Describe(dims);
        IdLayout.CheckRank(path, dims, readable);
        if (dims.FirstOrDefault(d => d < 0) is var negative and < 0)
        {
            throw new InvalidDataException($"{path}: shape {shape}: dimension {negative} is negative.");
        }

        if (dims.Contains(0))
        {
            throw new InvalidDataException($"{path}: shape {shape} holds no ids; nothing to replay.");
        }

        long ids, needed;
        try
        {
            ids = dims.Aggregate(1L, (product, dim) => checked(product * dim));
            needed = checked(dataOffset + (ids * itemSize));
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{path}: shape {shape} claims more ids than any file holds (the file has {fileLength:N0} bytes).");
        }

        NpyHeader.CheckLength(path, shape, needed, fileLength);

        var chosen = layout(path, dims);
        var (steps, layers, tokens, topK) = chosen.Sizes(dims);
        if (ids / steps > MaxIdsPerStep)
        {
            throw new InvalidDataException($"{path}: shape {shape} has {ids / steps:N0} ids per step; replay reads at most {MaxIdsPerStep:N0} (reshape to more, smaller steps).");
        }

        if (steps > int.MaxValue)
        {
            throw new InvalidDataException($"{path}: shape {shape} has {steps:N0} steps; replay reads at most {int.MaxValue:N0}.");
        }

        return new NpyShape(chosen, (int)steps, (int)layers, (int)tokens, (int)topK);
    }

    /// <summary>Reads one step's <see cref="IdsPerStep"/> ids into the start of <paramref name="destination"/>, as <c>[layers, tokens, k]</c>; returns <see cref="Tokens"/>.</summary>
    public int ReadStep(int step, Span<int> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(step, Steps);
        if (Layout.TokensBeforeLayers)
        {
            ReadTokensFirst((long)step * IdsPerStep, destination[..IdsPerStep]);
        }
        else
        {
            ReadIds((long)step * IdsPerStep, destination[..IdsPerStep]);
        }

        return Tokens;
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
            Convert(ReadChunk(position, count), 0, destination[..count]);
            position += (long)count * _itemSize;
            destination = destination[count..];
        }
    }

    /// <summary>
    /// Reads a step stored <c>[tokens, layers, k]</c> from id <paramref name="first"/> into
    /// <paramref name="destination"/> as <c>[layers, tokens, k]</c>: whole rows of k ids a chunk at a
    /// time, each put in its place, so the reorder needs no second buffer. A row longer than a chunk is
    /// read in pieces straight into its place: k comes from the file, and a chunk that held a whole row
    /// would take as many bytes.
    /// </summary>
    private void ReadTokensFirst(long first, Span<int> destination)
    {
        var rows = Tokens * Layers;
        var rowsPerChunk = (int)Math.Min(rows, ChunkBytes / ((long)_itemSize * TopK));
        if (rowsPerChunk == 0)
        {
            for (var row = 0; row < rows; row++)
            {
                ReadIds(first + ((long)row * TopK), destination.Slice(Place(row), TopK));
            }

            return;
        }

        var position = _dataOffset + (first * _itemSize);
        for (var row = 0; row < rows;)
        {
            var count = Math.Min(rowsPerChunk, rows - row);
            var bytes = ReadChunk(position, count * TopK);
            for (var r = 0; r < count; r++, row++)
            {
                Convert(bytes, r * TopK, destination.Slice(Place(row), TopK));
            }

            position += (long)count * TopK * _itemSize;
        }

        // Where row (token, layer) of the file goes in [layers, tokens, k].
        int Place(int row)
        {
            var (token, layer) = Math.DivRem(row, Layers);
            return ((layer * Tokens) + token) * TopK;
        }
    }

    /// <summary>
    /// Converts <c>destination.Length</c> ids from id <paramref name="first"/> of <paramref name="bytes"/>;
    /// int64 and uint64 ids outside the int32 range become <see cref="OutOfRangeId"/>.
    /// </summary>
    private void Convert(ReadOnlySpan<byte> bytes, int first, Span<int> destination)
    {
        for (var i = 0; i < destination.Length; i++)
        {
            var value = _header.Value(bytes, first + i);
            destination[i] = value is >= int.MinValue and <= int.MaxValue ? (int)value : OutOfRangeId;
        }

        if (_header.UnsignedMax is not null)
        {
            for (var i = 0; i < destination.Length; i++)
            {
                UnsignedMaxIds += _header.IsUnsignedMax(bytes, first + i) ? 1 : 0;
            }
        }
    }

    /// <summary>Of the ids read so far, those at an unsigned dtype's largest value (<see cref="NpyHeader.UnsignedMax"/>): −1 padding saved unsigned, likely.</summary>
    public long UnsignedMaxIds { get; private set; }

    /// <summary>The dtype's largest value, where it is unsigned (<see cref="NpyHeader.UnsignedMax"/>); null for a signed one.</summary>
    public string? UnsignedMax => _header.UnsignedMax;

    /// <summary>
    /// The largest id in the file as saved (int64 ids keep their value), for E when the caller does not
    /// give it. Negative ids (-1 is padding, others are invalid) never count; -1 when there is no other id.
    /// </summary>
    /// <exception cref="IdPastInt64Exception">A uint64 id is past <see cref="long.MaxValue"/>; the message gives it.</exception>
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
                if (_header.IsPastInt64(bytes, i))
                {
                    throw new IdPastInt64Exception(
                        $"{Path}: id {System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes[(i * 8)..]):N0} is past any expert count, so the largest id does not say how many experts there are; give --experts (larger ids then count as invalid; -1 padding saved as uint64 reads as 18,446,744,073,709,551,615: save ids in a signed type).");
                }

                max = Math.Max(max, _header.Value(bytes, i));
            }

            position += (long)count * _itemSize;
            remaining -= count;
        }

        return max;
    }

    /// <summary>Ends an archive member's stream until the next read (its decoder's state is freed); nothing for a file.</summary>
    public void Close() => (_bytes as NpzMemberBytes)?.Close();

    public void Dispose() => _bytes.Dispose();

    /// <summary>Reads <paramref name="count"/> ids from byte <paramref name="position"/>, at most a chunk's worth.</summary>
    private ReadOnlySpan<byte> ReadChunk(long position, int count)
    {
        // Counts come from the file's shape: one past a chunk is a reader's bug, refused before its byte count can overflow.
        if (count > ChunkBytes / _itemSize)
        {
            throw new InvalidOperationException($"A read of {count:N0} ids of {_itemSize} bytes, more than a chunk of {ChunkBytes:N0} bytes.");
        }

        var bytes = count * _itemSize;
        if (t_chunk is null || t_chunk.Length < bytes)
        {
            t_chunk = new byte[bytes];
        }

        var chunk = t_chunk.AsSpan(0, bytes);
        if (_bytes.Read(chunk, position) < bytes)
        {
            throw new InvalidDataException(_bytes.EndedEarly(position + bytes));
        }

        return chunk;
    }

}

/// <summary>A replayable shape: every size already checked against the file; <see cref="Layers"/> is 1 without a layers axis.</summary>
internal readonly record struct NpyShape(IdLayout Layout, int Steps, int Layers, int Tokens, int TopK)
{
    /// <summary>A header's shape as NumPy prints it: <c>(3, 4, 2)</c>, <c>(5,)</c>.</summary>
    public static string Describe(IReadOnlyList<long> dims) => $"({string.Join(", ", dims)}{(dims.Count == 1 ? "," : "")})";
}

/// <summary>A uint64 id past <see cref="long.MaxValue"/> where the largest id was to give the expert count: a usage error, as any id too large for one.</summary>
internal sealed class IdPastInt64Exception(string message) : Exception(message);
