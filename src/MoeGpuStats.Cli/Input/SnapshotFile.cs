using System.Text.Json;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// A snapshot saved with --save (or the seed's serde), as report, merge and plan read it: one layer's
/// <see cref="RoutingStats"/>, or a whole model's <see cref="ModelRoutingStats"/>, told apart by the
/// model's own fields (<c>layers</c> or <c>window_load</c>; a model missing one is refused naming it).
/// </summary>
internal static class SnapshotFile
{
    /// <summary>How snapshots are written: indented, as the seed's serde writes them.</summary>
    public static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>Reads <paramref name="path"/>; any way the file is malformed is an <see cref="InvalidDataException"/> naming it.</summary>
    public static Snapshot Load(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            RefuseArrays(stream, path);
            // The parser holds the whole file (and above 2 GiB fails with an overflow that names nothing).
            if (stream.Length > Serialization.RoutingStatsFile.MaxFileBytes)
            {
                throw new InvalidDataException(
                    $"{path}: {stream.Length:N0} bytes; a snapshot file is at most {Serialization.RoutingStatsFile.MaxFileBytes:N0} bytes (the largest that --save writes is under 600 MB).");
            }

            using var document = Parse(stream, path);
            var root = document.RootElement;
            if (root.ValueKind == JsonValueKind.Array)
            {
                throw new InvalidDataException($"{path}: a JSON array, as a window load that plan reads, not a snapshot; this command reads the JSON object that --save writes.");
            }

            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new JsonException($"Routing statistics must be a JSON object, not {Serialization.JsonShown.Kind(root.ValueKind)}.");
            }

            // Bounded before the lookups below, which scan the fields.
            Serialization.SnapshotFields.RefuseUnbounded(root, "");

            if (root.TryGetProperty("physical_to_logical", out _))
            {
                throw new InvalidDataException($"{path}: an expert placement, as plan --json writes it, not a snapshot; plan reads it with --current (the placement serving now).");
            }

            if (root.TryGetProperty("since_start", out _))
            {
                throw new InvalidDataException($"{path}: a model's report, as --json prints it, not a snapshot; this command reads the file that --save writes (replay --save FILE.json).");
            }

            // The document already read, not the file again, nor a copy of it (as JsonElement.Deserialize makes for a
            // converter): the file is parsed once, and is the one whose fields told a model from a layer.
            return root.TryGetProperty("layers", out _) || root.TryGetProperty("window_load", out _)
                ? new Snapshot(null, Serialization.ModelRoutingStatsJsonConverter.FromElement(root))
                : new Snapshot(Serialization.RoutingStatsJson.FromElement(root), null);
        }
        catch (Exception exception) when (exception is JsonException or ArgumentException or OverflowException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a routing statistics snapshot ({ErrorText.Clause(exception)}); this command reads the file that --save writes (replay --save FILE.json).", exception);
        }
    }

    /// <summary>
    /// The file's one JSON document, read as the library reads a snapshot (<see cref="Serialization.RoutingStatsFile.Parse"/>:
    /// bounded in tokens before it is parsed); JSON lines (a trace) are named as such, not quoted from the parser.
    /// </summary>
    private static JsonDocument Parse(Stream stream, string path)
    {
        try
        {
            return Serialization.RoutingStatsFile.Parse(stream, path);
        }
        catch (JsonException) when (StartsAsJsonLines(stream))
        {
            throw new InvalidDataException($"{path}: JSON lines of top-k ids, a trace, not a snapshot; `moegs replay {path}` reports the trace (add --save FILE.json for a snapshot that this command reads).");
        }
    }

    /// <summary>Whether the file starts as a trace's JSON lines; a trace's first line holds one step's ids, a few hundred kilobytes at prefill sizes.</summary>
    private static bool StartsAsJsonLines(Stream stream)
    {
        var start = new byte[(int)Math.Min(stream.Length, 4 << 20)];
        stream.Position = 0;
        stream.ReadExactly(start);
        return JsonLinesTrace.StartsAsJsonLines(Serialization.RoutingStatsFile.WithoutByteOrderMark(start).Span);
    }

    /// <summary>
    /// Names a NumPy file given where a snapshot belongs (a trace, a window load), which the JSON
    /// parser would call an invalid start of a value; leaves <paramref name="stream"/> at its start.
    /// </summary>
    private static void RefuseArrays(Stream stream, string path)
    {
        Span<byte> start = stackalloc byte[6];
        var read = stream.ReadAtLeast(start, start.Length, throwOnEndOfStream: false);
        stream.Position = 0;
        var kind = start[..read].SequenceEqual(NpyHeader.MagicBytes) ? ".npy array"
            : start[..read].StartsWith("PK\u0003\u0004"u8) ? ".npz archive"
            : null;
        if (kind is not null)
        {
            throw new InvalidDataException($"{path}: a {kind}, not a snapshot; this command reads the JSON that --save writes (replay reads traces, plan reads load arrays).");
        }
    }

    /// <summary>
    /// Why <paramref name="path"/>'s name says a format a snapshot is not, or null: a snapshot is JSON,
    /// and under a NumPy, archive, picture or JSON-lines name the tools that go by the name would misread it.
    /// </summary>
    public static string? NameProblem(string path) =>
        Path.GetExtension(path).ToLowerInvariant() is ".npy" or ".npz" or ".png" or ".jpg" or ".jpeg" or ".jsonl" or ".ndjson" or ".csv"
            ? $"a snapshot is written as JSON, which a {Path.GetExtension(path)} name would misname; give a name ending in .json."
            : null;

    /// <summary>Writes <paramref name="model"/> as JSON to <paramref name="path"/>, whole or not at all.</summary>
    public static void Save(ModelRoutingStats model, string path) =>
        OutputPath.WriteAtomically(path, stream => JsonSerializer.Serialize(stream, model, Indented));
}

/// <summary>What a snapshot file holds: one layer's statistics or a whole model's, exactly one of them.</summary>
internal sealed record Snapshot(RoutingStats? Layer, ModelRoutingStats? Model) : IDisposable
{
    /// <summary>What it is, for messages: "one layer of 8 experts", "a model of 32 layers of 8 experts" (", empty steps left out" where they were; ", a merge of 2 snapshots" for a merge's).</summary>
    public string Describe() => Model is { } model
        ? $"a model of {Counted.Of(model.Layers, "layer")} of {Counted.Of(model.Experts, "expert")}{(model.Options.SkipEmptySteps ? ", empty steps left out" : "")}{Merge(model.MergedParts)}"
        : $"one layer of {Counted.Of(Experts(Layer!), "expert")}{Merge(Layer!.MergedParts)}";

    private static string Merge(int parts) => parts > 1 ? $", a merge of {parts:N0} snapshots" : "";

    /// <summary>A layer's experts: those its counts hold, or before its first batch (which sizes them, as the seed's) those its options name.</summary>
    public static int Experts(RoutingStats layer) => layer.ExpertUtilization.Count > 0 ? layer.ExpertUtilization.Count : layer.Options.Experts ?? 0;

    public void Dispose()
    {
        Layer?.Dispose();
        Model?.Dispose();
    }
}
