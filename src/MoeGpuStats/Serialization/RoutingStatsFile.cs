using System.Text.Json;
using System.Text.Unicode;
using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>Snapshots on disk, in the seed-compatible JSON shape.</summary>
public static class RoutingStatsFile
{
    /// <summary>
    /// The largest snapshot file read, in bytes: 1 GiB. The largest state the library writes, a model
    /// of 1,024 layers of 4,096 experts with every count and float at its longest, is under 600 MB;
    /// a larger file would be parsed whole into memory (a few times its size) before any check.
    /// </summary>
    public const long MaxFileBytes = 1L << 30;

    /// <summary>
    /// The most JSON tokens (values, field names and the ends of objects and arrays) a snapshot file may hold: 2^25.
    /// The largest model (1,024 layers of 4,096 experts, with a decay; a model's layers keep no latencies)
    /// writes about 22 million; a file of more is refused before the parser's 12 bytes a token are spent on it.
    /// </summary>
    internal const long MaxJsonTokens = 1L << 25;

    /// <summary>
    /// Writes a snapshot of <paramref name="stats"/> to <paramref name="path"/> atomically: a temporary
    /// file in the same folder, flushed, then renamed over the target, so a reader never sees half a file; a
    /// target replaced keeps its permissions (on Unix), and a link is replaced by the file, its target left alone. The file keeps the state and options, not the engine: <see cref="Load"/> returns statistics on the managed engine.
    /// </summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty.</exception>
    /// <exception cref="IOException">The file cannot be written, or <paramref name="path"/> names a device, a pipe, a socket, a link to one, or a name in /dev, /proc or /sys (<see cref="OutputTarget"/>); the target is left as it was.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder or the target may not be written; the target is left as it was.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="stats"/> (or, for a model's layer, its model) were disposed.</exception>
    public static void Save(RoutingStats stats, string path)
    {
        ArgumentNullException.ThrowIfNull(stats);
        WriteAtomically(path, writer => RoutingStatsJson.Write(writer, stats));
    }

    /// <summary>
    /// Writes <paramref name="model"/> as the JSON that <c>moegs report</c>, <c>merge</c> and <c>plan</c>
    /// read, and <c>JsonSerializer.Deserialize&lt;ModelRoutingStats&gt;</c>: each layer in the seed's shape
    /// and the window load, from one read of the model, so every figure is of one step; not the window's
    /// ring of steps, so a model read back reads and merges but records no more. Written atomically, as
    /// <see cref="Save(RoutingStats, string)"/>. Per-rank files of one model merge exactly
    /// (<see cref="ModelRoutingStats.Merge"/>, <c>moegs merge</c>).
    /// </summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    /// <exception cref="IOException">The file cannot be written, or <paramref name="path"/> names no file a write may replace, as in <see cref="Save(RoutingStats, string)"/>; the target is left as it was.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder may not be written to; the target is left as it was.</exception>
    public static void Save(ModelRoutingStats model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        WriteAtomically(path, writer => JsonSerializer.Serialize(writer, model));
    }

    /// <summary>
    /// Writes <paramref name="model"/> as <see cref="Save(ModelRoutingStats, string)"/> does, and with
    /// <paramref name="withWindowRing"/> its window's ring of steps too (<c>window_ring</c>: each step's
    /// <c>[layers, experts]</c> counts as little-endian uint32 in base64, 5.3 bytes a count; 79 MB for
    /// 58 × 256 experts over 1,000 steps): a checkpoint, which <see cref="LoadModel"/> reads back as a model that records
    /// on exactly as the saved one would have (the counts, means, window and variance history to the bit).
    /// </summary>
    /// <param name="model">The model to save.</param>
    /// <param name="path">The file to write.</param>
    /// <param name="withWindowRing">Whether to write the window ring (a checkpoint); false writes what <see cref="Save(ModelRoutingStats, string)"/> writes.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty; or the ring's base64 would pass 512 MiB (about 100 million counts: <c>window × layers × experts</c>), or the whole file <see cref="MaxFileBytes"/>, which <see cref="LoadModel"/> would not read; the target is left as it was.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    /// <exception cref="InvalidOperationException">With the ring, the model holds its window's load but no ring (read from a file other than a checkpoint, or a merge or snapshot of one); the target is left as it was.</exception>
    /// <exception cref="InsufficientMemoryException">A device engine could not hold the ring's copy; the file is not written.</exception>
    /// <exception cref="IOException">The file cannot be written, as in <see cref="Save(RoutingStats, string)"/>; the target is left as it was.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder may not be written to; the target is left as it was.</exception>
    public static void Save(ModelRoutingStats model, string path, bool withWindowRing)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!withWindowRing)
        {
            Save(model, path);
            return;
        }

        var options = model.Options;
        var ringBytes = WindowRingJson.Base64Bytes(options.Window, options.Layers, options.Experts);
        if (ringBytes > WindowRingJson.MostBase64Bytes)
        {
            throw new ArgumentException(
                Invariant($"withWindowRing is true but the window ring of {options.WindowEntries:N0} counts (window {options.Window:N0} × {Plural.Of(options.Layers, "layer")} × {Plural.Of(options.Experts, "expert")}) takes {ringBytes:N0} bytes of base64, past the {WindowRingJson.MostBase64Bytes:N0} a snapshot file gives it; save without it, or with a shorter window."),
                nameof(withWindowRing));
        }

        WriteAtomically(path, writer =>
        {
            ModelRoutingStatsJsonConverter.Write(writer, model, withRing: true);
            writer.Flush();
            if (writer.BytesCommitted > MaxFileBytes)
            {
                // The largest models' layers alone take up to 600 MB: with the ring, the file would not be read back.
                throw new ArgumentException(
                    Invariant($"withWindowRing is true but the checkpoint takes {writer.BytesCommitted:N0} bytes, past the {MaxFileBytes:N0} a snapshot file may take; save without the ring, or with a shorter window."),
                    nameof(withWindowRing));
            }
        });
    }

    /// <summary>
    /// Writes the JSON <paramref name="write"/> writes to <paramref name="path"/> as an <see cref="AtomicFile"/>, its
    /// failures named against <paramref name="path"/>, not the temporary.
    /// </summary>
    private static void WriteAtomically(string path, Action<Utf8JsonWriter> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        // The temporary's name stays within the file system's 255 bytes wherever the target's does.
        var name = Path.GetFileName(full);
        var stem = System.Text.Encoding.UTF8.GetByteCount(name) <= 100 ? name : "snapshot";
        // Said in the caller's terms: the errors of creating the temporary would name a file they never gave.
        if (Directory.Exists(full))
        {
            throw new IOException(Invariant($"{full} is a folder; give the path of a file to write."));
        }

        if (OutputTarget.Problem(full) is { } problem)
        {
            throw new IOException(Invariant($"{full} {problem}; give the path of a file to write."));
        }

        var folder = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException(File.Exists(folder)
                ? Invariant($"{folder} is not a folder (a file, a pipe or a device); give a path in a folder.")
                : Invariant($"the folder {folder} does not exist, or may not be searched; create it, or give a path in an existing folder."));
        }

        var temporary = Path.Combine(folder, Invariant($".{stem}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp"));
        try
        {
            AtomicFile.Write(full, temporary, stream =>
            {
                using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
                write(writer);
            });
        }
        catch (UnauthorizedAccessException exception)
        {
            throw new UnauthorizedAccessException(exception.Message.Replace(temporary, full, StringComparison.Ordinal), exception);
        }
        catch (FileNotFoundException exception) when (exception.FileName == temporary)
        {
            // A proc or sys file system mounted elsewhere than OutputTarget knows (a host's /proc at /host/proc) refuses a
            // new name with ENOENT, which .NET reports as the (existing) target not found.
            throw new IOException(Invariant($"{full}: its folder {folder} lets no file be created in it (as /proc and /sys do not); give a path elsewhere."), exception);
        }
        catch (IOException exception) when (exception.Message.Contains(temporary, StringComparison.Ordinal))
        {
            // A full disk or a read-only file system, named against the caller's path.
            throw new IOException(exception.Message.Replace(temporary, full, StringComparison.Ordinal), exception);
        }
    }

    /// <summary>
    /// Reads a snapshot written by <see cref="Save(RoutingStats, string)"/> or by the seed's serde, as statistics
    /// on the managed engine (whatever engine wrote it), which record on from the state read.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty.</exception>
    /// <exception cref="FileNotFoundException">There is no such file, or no such folder on its path.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    /// <exception cref="InvalidDataException">
    /// The path is a folder, or the file is larger than <see cref="MaxFileBytes"/>, truncated, not JSON, a model's
    /// snapshot (read by <see cref="LoadModel"/>), or not routing statistics; the message names the path.
    /// </exception>
    public static RoutingStats Load(string path) => Read(path, model: false, root => RoutingStatsJson.FromElement(root));

    /// <summary>
    /// Reads a model's snapshot written by <see cref="Save(ModelRoutingStats, string)"/> (or <c>moegs</c>'s
    /// <c>--save</c>, or <c>moegs merge</c>), as a model on the managed engine that reads and merges as the one
    /// saved did; it holds its window's load but not the window's steps, so it records no more until
    /// <see cref="ModelRoutingStats.Reset"/>. A checkpoint (<see cref="Save(ModelRoutingStats, string, bool)"/> with the
    /// window ring) holds the steps too: the model records on.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty.</exception>
    /// <exception cref="FileNotFoundException">There is no such file, or no such folder on its path.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    /// <exception cref="InvalidDataException">
    /// The path is a folder, or the file is larger than <see cref="MaxFileBytes"/>, truncated, not JSON, one
    /// layer's snapshot (read by <see cref="Load"/>), or not a model's routing statistics; the message names the path.
    /// </exception>
    public static ModelRoutingStats LoadModel(string path) => Read(path, model: true, ModelRoutingStatsJsonConverter.FromElement);

    /// <summary>The snapshot at <paramref name="path"/>, of a model or of one layer, read by <paramref name="read"/>.</summary>
    private static T Read<T>(string path, bool model, Func<JsonElement, T> read)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        // Opening a folder fails as "access denied", which sends the user looking at permissions.
        if (Directory.Exists(path))
        {
            throw new InvalidDataException(Invariant($"{path}: a folder, not a routing statistics snapshot file; give the file that Save wrote."));
        }

        using var stream = OpenRead(path);
        try
        {
            using var document = Parse(stream, path);
            var root = document.RootElement;
            // Bounded before the lookups that tell a model from a layer, which scan the fields.
            if (root.ValueKind == JsonValueKind.Object)
            {
                SnapshotFields.RefuseUnbounded(root, "");
            }

            if (model && IsLayer(root))
            {
                throw new InvalidDataException(Invariant($"{path}: one layer's snapshot, not a model's; read it with RoutingStatsFile.Load."));
            }

            if (!model && IsModel(root))
            {
                throw new InvalidDataException(Invariant($"{path}: a model's snapshot (of {Plural.Of(root.GetProperty("layers").GetArrayLength(), "layer")}), not one layer's; read it with RoutingStatsFile.LoadModel."));
            }

            return read(root);
        }
        catch (Exception exception) when (exception is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException(Invariant($"{path}: not a {(model ? "model's " : "")}routing statistics snapshot ({exception.Message})"), exception);
        }
    }

    /// <summary>
    /// Whether <paramref name="root"/> is a model's snapshot and not one layer's: an object with a <c>layers</c> array
    /// and without the seed's <c>total_routings</c>, which a model keeps in each layer. Anything else is for the reader
    /// to refuse in its own words.
    /// </summary>
    private static bool IsModel(JsonElement root) =>
        root.ValueKind == JsonValueKind.Object && root.TryGetProperty("layers", out var layers) && layers.ValueKind == JsonValueKind.Array
        && !root.TryGetProperty("total_routings", out _);

    /// <summary>Whether <paramref name="root"/> is one layer's snapshot and not a model's: an object with the seed's <c>total_routings</c> and no <c>layers</c>.</summary>
    private static bool IsLayer(JsonElement root) =>
        root.ValueKind == JsonValueKind.Object && root.TryGetProperty("total_routings", out _) && !root.TryGetProperty("layers", out _);

    /// <summary>
    /// The file's JSON, refused past <see cref="MaxFileBytes"/> before it is read and past <see cref="MaxJsonTokens"/>
    /// before it is parsed (the parser holds the whole file, and above 2 GiB fails with an overflow that names
    /// nothing), read past a UTF-8 byte order mark; the CLI's snapshot reader shares it.
    /// </summary>
    /// <exception cref="InvalidDataException">Past either limit, or not UTF-8; the message names <paramref name="path"/>.</exception>
    /// <exception cref="JsonException">Not JSON.</exception>
    internal static JsonDocument Parse(Stream stream, string path)
    {
        var json = WithoutByteOrderMark(BoundedRead.All(stream, MaxFileBytes, size => TooLarge(path, size)));

        // The parser leaves strings' UTF-8 unchecked until they are read: a field name that is not would be refused
        // deep in the reader as a value that "could not be converted".
        if (!Utf8.IsValid(json.Span))
        {
            throw new InvalidDataException(Invariant($"{path}: not UTF-8 text{CompressedData.Hint(json.Span)}; a routing statistics snapshot is UTF-8 JSON."));
        }

        return JsonTokenCount.ExceedsSnapshot(json.Span)
            ? throw new InvalidDataException(TooManyTokens(path))
            : JsonDocument.Parse(json);
    }

    /// <summary><paramref name="json"/> past a UTF-8 byte order mark, as editors on Windows may write one (the parser of bytes refuses it).</summary>
    internal static ReadOnlyMemory<byte> WithoutByteOrderMark(ReadOnlyMemory<byte> json) =>
        json.Span.StartsWith("\uFEFF"u8) ? json[3..] : json;

    /// <summary>The refusal of a file of more than <see cref="MaxJsonTokens"/> tokens, naming <paramref name="path"/>.</summary>
    internal static string TooManyTokens(string path) =>
        Invariant($"{path}: more than {MaxJsonTokens:N0} JSON tokens (values, field names and the ends of objects and arrays); a routing statistics snapshot holds at most that many (the largest model the library writes, 1,024 layers of 4,096 experts, about 22 million).");

    private static InvalidDataException TooLarge(string path, string size) =>
        new(Invariant($"{path}: {size}; a routing statistics snapshot file is at most {MaxFileBytes:N0} bytes (the largest the library writes is under 600 MB)."));

    /// <summary>Opens <paramref name="path"/>; a missing folder on the path is a missing file, as documented.</summary>
    private static FileStream OpenRead(string path)
    {
        try
        {
            return File.OpenRead(path);
        }
        catch (DirectoryNotFoundException exception)
        {
            throw new FileNotFoundException(Invariant($"{path}: no such file (its folder does not exist)."), path, exception);
        }
    }
}
