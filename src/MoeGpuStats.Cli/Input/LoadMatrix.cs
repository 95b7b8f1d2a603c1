using System.Text.Json;
using MoeGpuStats.Serialization;
using MoeGpuStats.Placement;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// The load matrix <c>plan</c> reads, <c>[layers, experts]</c> of non-negative whole numbers, told apart by
/// content: the .npy magic, a JSON array (of arrays) of numbers, or a JSON snapshot object.
/// </summary>
/// <remarks>
/// A shape is checked against what a plan takes (layers, experts) before anything of its size is
/// allocated or read, and a .npy header's against the file's length, as <see cref="NpyIds"/> does.
/// </remarks>
internal static class LoadMatrix
{
    /// <summary>The largest JSON load file read: a [layers, experts] matrix of counts is a few hundred KiB.</summary>
    private const int MaxJsonBytes = 256 << 20;

    /// <summary>Reads <paramref name="path"/>; on failure writes one line naming the file and returns false.</summary>
    /// <param name="console">Where the failure's line goes.</param>
    /// <param name="path">The load file.</param>
    /// <param name="column">What a column counts, for the messages: "expert", or "slot" for a load per physical slot.</param>
    /// <param name="loads">The matrix read, <c>[layers, columns]</c>.</param>
    /// <param name="source">Which of a snapshot's loads was read, in a phrase; null for an array, which is its own load.</param>
    public static bool TryRead(CliConsole console, FileInfo path, string column, out long[,] loads, out string? source)
    {
        var longRead = InputFile.LongReadNote(console, path);
        var read = InputFile.TryRead(console, path, "a load file (.npy or .json)", name => (Read(name, column, out var from, longRead), from), out var result);
        (loads, source) = result;
        return read;
    }

    /// <summary>More layers than any MoE model has: an array of more rows is more likely tokens than layers.</summary>
    internal const int MostModelLayers = 128;

    /// <summary>More ids per token than any MoE router picks: an array of more columns is more likely experts than k.</summary>
    internal const int MostTopK = 16;

    /// <summary>
    /// A note when an array read as loads looks like a trace of top-k ids instead, <c>[tokens, k]</c>: more rows than
    /// any MoE model has layers (Qwen3-235B has 94) and few columns, as k is; else null. Both shapes are a
    /// matrix of whole numbers, so the shape is all that tells them apart, and a model's load may have that shape too:
    /// a note, not a refusal. A snapshot (<paramref name="source"/> set) is a load whatever its shape.
    /// </summary>
    public static string? IdsNote(FileInfo path, long[,] loads, string? source)
    {
        var (rows, columns) = (loads.GetLength(0), loads.GetLength(1));
        return source is null && rows > MostModelLayers && columns <= MostTopK
            ? $"note: {UnsafeText.Escaped(path.Name)} is read as the load of {Counted.Of(rows, "layer")} of {Counted.Of(columns, "expert")}, more layers than today's MoE models have (94, Qwen3-235B); if it holds top-k ids, [tokens, k], it is a trace: {ReplayFirst(UnsafeText.Escaped(path.Name), FirstBytes(path.FullName).SequenceEqual(NpyHeader.MagicBytes))}."
            : null;
    }

    /// <summary>How a trace of top-k ids becomes a load plan reads: replay saves its load; replay reads a .npy, not a JSON array.</summary>
    private static string ReplayFirst(string path, bool npy) => npy
        ? $"`moegs replay {path} --experts E --save FILE.json` saves its load, which plan reads"
        : "saved as .npy (np.save), `moegs replay FILE.npy --experts E --save FILE.json` saves its load, which plan reads";

    /// <exception cref="InvalidDataException">The file is not a load matrix; the message names it.</exception>
    internal static long[,] Read(string path) => Read(path, "expert", out _, longRead: null);

    /// <param name="path">The file.</param>
    /// <param name="column">What a column counts, for the messages: "expert", or "slot" for a load per physical slot.</param>
    /// <param name="source">Which of a snapshot's loads was read, in a phrase; null for an array of loads.</param>
    /// <param name="longRead">Told before a JSON file is read whole (a model's snapshot parses for seconds from hundreds of MB), with the size from which that is long and why.</param>
    /// <exception cref="InvalidDataException">The file is not a load matrix; the message names it.</exception>
    private static long[,] Read(string path, string column, out string? source, Action<long, string>? longRead)
    {
        source = null;
        var start = FirstBytes(path);
        if (start.StartsWith("PK\u0003\u0004"u8))
        {
            throw new InvalidDataException($"{path}: an .npz archive (of top-k ids?), not a load; `moegs replay {path} --window-load load.npy` writes its window load, which plan reads.");
        }

        var loads = start.SequenceEqual(NpyHeader.MagicBytes) ? ReadNpy(path, column)
            : LargeSnapshot(path, start) ? FromSnapshot(path, column, out source)
            : ReadJson(ReadJsonBytes(path, longRead), path, column, out source);
        if (loads.GetLength(1) == 0)
        {
            throw new InvalidDataException($"{path}: no loads (a snapshot with no batch): nothing to place.");
        }

        var any = false;
        for (var layer = 0; layer < loads.GetLength(0); layer++)
        {
            for (var e = 0; e < loads.GetLength(1); e++)
            {
                if (loads[layer, e] < 0)
                {
                    throw new InvalidDataException($"{path}: the load of {column} {e} in layer {layer} is {loads[layer, e]:N0}; loads are token counts, 0 or more.");
                }

                any |= loads[layer, e] > 0;
            }
        }

        // Every placement balances no load perfectly: a plan of it would be an arbitrary one reported as ideal.
        return any ? loads : throw new InvalidDataException($"{path}: every load is 0: nothing to balance.");
    }

    private static long[,] ReadNpy(string path, string column)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var length = RandomAccess.GetLength(file);
        var header = NpyHeader.Read(file, length, path);
        var shape = $"({string.Join(", ", header.Shape)}{(header.Shape.Length == 1 ? "," : "")})";
        var (layers, experts) = header.Shape.Length switch
        {
            1 => (1L, header.Shape[0]),
            2 => (header.Shape[0], header.Shape[1]),
            _ => throw new InvalidDataException(
                $"{path}: shape {shape} has {Counted.Of(header.Shape.Length, "dimension")}; loads are [layers, experts], or [experts] for one layer"
                + header.Shape.Length switch
                {
                    3 => " (a trace of top-k ids? a model's, `[layers, tokens, k]`: `moegs replay FILE --layout layers,tokens,k --window-load load.npy` writes its load, tokens,layers,k likewise; one layer's, `[steps, tokens, k]`: `moegs replay FILE --layout steps,tokens,k --save run.json`, then plan run.json).",
                    4 => " (a trace of top-k ids? `moegs replay FILE --window-load load.npy` writes its load).",
                    _ => ".",
                }),
        };
        if (header.FortranOrder && layers > 1 && experts > 1)
        {
            throw new InvalidDataException($"{path}: Fortran-ordered array; save it in C order (np.ascontiguousarray).");
        }

        if (layers == 0 || experts == 0)
        {
            throw new InvalidDataException($"{path}: shape {shape} holds no loads; nothing to place.");
        }

        CheckShape(path, layers, experts, column, npy: true);

        // At most 1,024 × 65,536 loads of 8 bytes: 512 MiB, no overflow and within an array's length.
        var needed = header.DataOffset + (layers * experts * header.ItemSize);
        NpyHeader.CheckLength(path, shape, needed, length);

        var data = new byte[needed - header.DataOffset];
        if (NpyHeader.ReadFully(file, data, header.DataOffset) < data.Length)
        {
            throw new InvalidDataException($"{path}: truncated data.");
        }

        var loads = new long[layers, experts];
        for (var layer = 0; layer < layers; layer++)
        {
            for (var e = 0; e < experts; e++)
            {
                var index = (int)((layer * experts) + e);
                if (header.IsPastInt64(data, index))
                {
                    throw new InvalidDataException($"{path}: the load of {column} {e} in layer {layer} is past {long.MaxValue:N0}, the largest a plan reads.");
                }

                loads[layer, e] = header.Value(data, index);
            }
        }

        return loads;
    }

    private static long[,] ReadJson(ReadOnlyMemory<byte> file, string path, string column, out string? source)
    {
        source = null;
        var json = RoutingStatsFile.WithoutByteOrderMark(file).Span;
        try
        {
            var reader = new Utf8JsonReader(json);
            reader.Read();
            if (reader.TokenType == JsonTokenType.StartArray)
            {
                return JsonLoadArray.Read(json, path, column, (layers, columns) => CheckShape(path, layers, columns, column, npy: false));
            }

            // The whole file is JSON before its root is judged, as for an array.
            var root = reader.TokenType;
            while (reader.Read())
            {
            }

            return root == JsonTokenType.StartObject
                ? FromSnapshot(path, column, out source)
                : throw new InvalidDataException($"{path}: JSON {JsonText.KindOf(root).ToString().ToLowerInvariant()}; give an array of arrays of loads ([layers][experts]) or a snapshot saved with --save.");
        }
        catch (JsonException exception)
        {
            throw new InvalidDataException(JsonLinesTrace.StartsAsJsonLines(file.Span)
                ? $"{path}: JSON lines, as a trace of top-k ids, not a load; replay the trace with --window-load to write the window load that plan reads."
                : MoeGpuStats.Serialization.CompressedData.Hint(file.Span) is { Length: > 0 } compressed
                ? $"{path}: neither a .npy file nor JSON{compressed}."
                : $"{path}: neither a .npy file nor JSON ({ErrorText.Clause(exception)}).");
        }
    }

    /// <summary>
    /// Refuses a shape no plan takes before anything of its size is allocated or read: more rows than a
    /// model has layers (most likely a trace of ids, <c>[tokens, k]</c>, which reads as loads), or more
    /// loads a row than a plan has slots.
    /// </summary>
    private static void CheckShape(string path, long layers, long columns, string column, bool npy)
    {
        if (layers > ModelRoutingStatsOptions.MaxLayers)
        {
            throw new InvalidDataException(
                $"{path}: {layers:N0} rows; a load has one row per MoE layer, at most {ModelRoutingStatsOptions.MaxLayers:N0}. A [tokens, k] array of top-k ids is a trace: {ReplayFirst(path, npy)}.");
        }

        if (columns > ExpertPlacement.MaxPhysicalExperts)
        {
            // Asking for --replicas of at least the experts would name a value the option refuses.
            throw new InvalidDataException($"{path}: {Counted.Of(columns, column)} per layer; a plan places at most {ExpertPlacement.MaxPhysicalExperts:N0} (the most --replicas takes), one slot each at least.");
        }
    }

    /// <summary>A model snapshot's window load (what rebalancing acts on), or one layer's counts since the start.</summary>
    private static long[,] FromSnapshot(string path, string column, out string source)
    {
        using var snapshot = SnapshotFile.Load(path);
        source = snapshot.Model is { } snapshotModel
            ? $"the snapshot's window load: {WindowSteps(snapshotModel)}"
            : $"the snapshot's tokens per expert since the start, over {Counted.Of(snapshot.Layer!.TotalRoutings, "batch", "batches")}{(snapshot.Layer.MergedParts > 1 ? $" summed over {snapshot.Layer.MergedParts:N0} merged snapshots" : "")}";
        var (layers, experts, counts) = snapshot.Model is { } model
            ? (model.Layers, model.Experts, model.WindowLoad())
            : (1, snapshot.Layer!.ExpertTokenCounts.Count, snapshot.Layer.ExpertTokenCounts.ToArray());
        CheckShape(path, layers, experts, column, npy: false);
        if (experts > 0 && counts.All(count => count == 0))
        {
            throw new InvalidDataException($"{path}: every load is 0 (a snapshot before its first step, or a window of steps without tokens): nothing to balance.");
        }

        var loads = new long[layers, experts];
        for (var i = 0; i < counts.Length; i++)
        {
            var (layer, e) = Math.DivRem(i, experts);
            if (counts[i] > long.MaxValue)
            {
                throw new InvalidDataException($"{path}: layer {layer}, {column} {e} has {counts[i]:N0} slots, more than a plan reads ({long.MaxValue:N0}).");
            }

            loads[layer, e] = (long)counts[i];
        }

        return loads;
    }

    /// <summary>The steps a model's window load holds, in a phrase; a merge's are its snapshots' newest, added up step by step.</summary>
    private static string WindowSteps(ModelRoutingStats model)
    {
        var summary = model.Summary();
        return model.MergedParts > 1 ? $"the newest {Counted.Of((ulong)summary.WindowSteps, "step")} (at most) of each of {model.MergedParts:N0} merged snapshots ({Counted.Of(summary.Steps, "step")} summed)"
            : summary.WindowSteps == (long)summary.Steps ? $"all {Counted.Of(summary.Steps, "step")}"
            : $"the newest {summary.WindowSteps:N0} of {Counted.Of(summary.Steps, "step")}";
    }

    /// <summary>Whether <paramref name="path"/> is a .npy file, which plan reads as a load; false where it cannot be read.</summary>
    public static bool IsNpy(string path)
    {
        try
        {
            return FirstBytes(path).SequenceEqual(NpyHeader.MagicBytes);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The file's first bytes, as many as the .npy magic (fewer in a shorter file): enough to tell a .npy or .npz.</summary>
    private static ReadOnlySpan<byte> FirstBytes(string path)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var prefix = new byte[NpyHeader.MagicBytes.Length];
        return prefix.AsSpan(0, NpyHeader.ReadFully(file, prefix, 0));
    }

    /// <summary>
    /// Whether <paramref name="path"/>, which opens with <paramref name="start"/>, is a JSON object past the bound on a
    /// JSON load: a snapshot, read as one, within the bound on snapshots (--save writes them up to 600 MB).
    /// </summary>
    private static bool LargeSnapshot(string path, ReadOnlySpan<byte> start) =>
        new FileInfo(path).Length > MaxJsonBytes && RoutingStatsFile.WithoutByteOrderMark(start.ToArray()).Span.TrimStart(" \t\r\n"u8) is [(byte)'{', ..];

    private static ReadOnlyMemory<byte> ReadJsonBytes(string path, Action<long, string>? longRead)
    {
        if (new FileInfo(path).Length <= MaxJsonBytes)
        {
            longRead?.Invoke(128L << 20, "as JSON (seconds of parsing)");
        }

        return InputFile.ReadWhole(path, MaxJsonBytes, size => new InvalidDataException($"{path}: {size}; a JSON load file is read whole, up to {MaxJsonBytes:N0} (save large matrices with np.save)."));
    }
}
