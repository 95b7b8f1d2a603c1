using System.Buffers;
using System.Text.Json;
using System.Text.Unicode;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// A JSON-lines routing trace (<c>.jsonl</c>, <c>.ndjson</c>): one object a line, as a serving hook logs
/// them (<see cref="JsonTraceLine"/>), grouped into forward passes (<see cref="JsonTracePasses"/>).
/// Opening reads the file once to check it and index the passes; each step is then read again from its
/// lines, so memory holds the index (28 bytes a pass) and one step's ids, not the trace.
/// </summary>
internal sealed class JsonLinesTrace : IRoutingTrace
{
    private readonly LineReader _lines;
    private readonly string _path;
    private readonly JsonTracePassIndex _passes;
    private readonly int[] _written;
    private readonly long _maxId;
    private readonly int[] _layerIndex;

    /// <summary>
    /// Whether <paramref name="start"/> (a file's first bytes) opens with a line that alone is a JSON
    /// object holding top-k ids (<see cref="JsonTraceLine.IdsNames"/>): a trace, which does not parse as one
    /// document, so that a command given one where it reads JSON can say so rather than quote the parser.
    /// </summary>
    public static bool StartsAsJsonLines(ReadOnlySpan<byte> start)
    {
        // Blank lines before the first object, which the trace reader skips.
        start = start.TrimStart(" \t\r\n"u8);
        var end = start.IndexOf((byte)'\n');
        var reader = new Utf8JsonReader(end < 0 ? start : start[..end]);
        try
        {
            using var line = JsonDocument.ParseValue(ref reader);
            return line.RootElement.ValueKind == JsonValueKind.Object
                && JsonTraceLine.IdsNames.Any(name => line.RootElement.TryGetProperty(name, out _));
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private JsonLinesTrace(LineReader lines, string path, JsonTracePasses passes, string? cutOff)
    {
        Notes = [.. new[] { passes.LayerNote, cutOff }.OfType<string>()];
        _layerIndex = [.. Enumerable.Range(0, ModelRoutingStatsOptions.MaxLayers).Select(passes.LayerIndex)];
        _lines = lines;
        _path = path;
        _passes = passes.Index;
        _written = new int[passes.Layers];
        _maxId = passes.MaxId;
        Layers = passes.Layers;
        TopK = passes.TopK;
        HasLayers = passes.HasLayers;
        MaxTokens = _passes.MaxTokens;
        Axes = $"JSON lines, {passes.Grouping}";
    }

    public string Axes { get; }

    public string LayersHint => "no line has a layer field";

    public IdLayout? Layout => null;

    public string IdType => "JSON";

    public int Steps => _passes.Count;

    public bool HasLayers { get; }

    public int Layers { get; }

    public int TopK { get; }

    public int MaxTokens { get; }

    public IReadOnlyList<string> Notes { get; }

    /// <summary>
    /// Reads the trace at <paramref name="path"/>. A last line without a newline that is unfinished JSON is
    /// left out, with a note, and so is the forward pass it may belong to: a log still being written, or
    /// whose writer was stopped, ends in one.
    /// </summary>
    /// <exception cref="InvalidDataException">A line that is not a trace's, or passes that do not hold their layers' tokens; one line naming the file and line.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    public static JsonLinesTrace Open(string path)
    {
        var lines = new LineReader(path);
        try
        {
            var passes = new JsonTracePasses(path);
            string? cutOff = null;
            while (lines.TryRead(out var line))
            {
                if (line.Trim(" \t"u8).IsEmpty)
                {
                    continue;
                }

                JsonTraceLine parsed;
                try
                {
                    parsed = JsonTraceLine.Parse(line, path, lines.Number, passes.TopK);
                }
                catch (InvalidDataException exception) when (lines.Unterminated && IsUnfinished(line, exception))
                {
                    var dropped = passes.DropUnfinishedPass();
                    if (!passes.HasPasses)
                    {
                        throw new InvalidDataException($"{path}:{lines.Number}: the last line is cut off (unfinished JSON, and no newline ends it) and no forward pass before it is whole; nothing to replay yet.");
                    }

                    var pass = dropped is var (first, last) ? $", with the forward pass it may belong to ({(first == last ? $"line {first}" : $"lines {first} to {last}")})" : "";
                    cutOff = $"note: {UnsafeText.Escaped(path)}:{lines.Number}, the last line, is cut off (unfinished JSON, and no newline ends it, as in a log still being written): left out{pass}.";
                    break;
                }

                passes.Add(parsed, lines.Start, lines.Next, lines.Number);
            }

            passes.Finish();
            return new JsonLinesTrace(lines, path, passes, cutOff);
        }
        catch
        {
            lines.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Whether <paramref name="line"/>, which <paramref name="refusal"/> refused, is the start of a JSON
    /// value that more bytes could finish, as a line cut off by its writer is (between the bytes of a
    /// character, too); a whole line that is not JSON (a NaN, a typo) or not a trace's is not.
    /// </summary>
    private static bool IsUnfinished(ReadOnlySpan<byte> line, InvalidDataException refusal)
    {
        // Decoded a chunk at a time, to find where the valid UTF-8 ends: a cut-off line may be as long as a line gets.
        Span<char> chunk = stackalloc char[1024];
        var valid = 0;
        OperationStatus status;
        do
        {
            status = Utf8.ToUtf16(line[valid..], chunk, out var read, out _, replaceInvalidSequences: false, isFinalBlock: false);
            valid += read;
        }
        while (status == OperationStatus.DestinationTooSmall);

        return status is OperationStatus.Done or OperationStatus.NeedMoreData
            && (refusal.InnerException is JsonException || valid < line.Length)
            && IsJsonPrefix(line[..valid]);
    }

    /// <summary>Whether <paramref name="line"/> is the start of a JSON value, read as far as it goes.</summary>
    private static bool IsJsonPrefix(ReadOnlySpan<byte> line)
    {
        var reader = new Utf8JsonReader(line, isFinalBlock: false, state: default);
        try
        {
            while (reader.Read())
            {
            }

            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    public int TokensAt(int step) => _passes[step].Tokens;

    /// <summary>The pass's position and the line it starts on: a pass's own step field may hold any number, or none.</summary>
    public string StepName(int step) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{step:N0} at line {_passes[step].FirstLine:N0}");

    public int ReadStep(int step, Span<int> destination)
    {
        var pass = _passes[step];
        var tokens = pass.Tokens;
        Array.Clear(_written);
        _lines.Seek(pass.Start, pass.End, pass.FirstLine);
        while (_lines.TryRead(out var line))
        {
            if (line.Trim(" \t"u8).IsEmpty)
            {
                continue;
            }

            JsonTraceLine parsed;
            try
            {
                parsed = JsonTraceLine.Parse(line, _path, _lines.Number, TopK);
            }
            catch (InvalidDataException exception)
            {
                // Open parsed every line of the pass: one that no longer parses was changed since (cut off, rewritten).
                throw Changed(_lines.Number, exception);
            }

            var layer = parsed.Layer is { } field ? _layerIndex[field.Value] : 0;
            if (layer < 0 || _written[layer] + parsed.Tokens > tokens)
            {
                throw Changed(_lines.Number);
            }

            parsed.CopyIds(line, destination.Slice(((layer * tokens) + _written[layer]) * TopK, parsed.Tokens * TopK));
            _written[layer] += parsed.Tokens;
        }

        if (_written.Any(written => written != tokens))
        {
            throw Changed(_lines.Number);
        }

        return tokens;
    }

    public long MaxId() => _maxId;

    public void Dispose() => _lines.Dispose();

    /// <summary>The error of a pass that no longer reads as it did when the trace was opened; <paramref name="now"/>, the line's refusal now.</summary>
    private InvalidDataException Changed(long number, InvalidDataException? now = null)
    {
        var at = $"{_path}:{number}: ";
        var reason = now is null ? "" : (now.Message.StartsWith(at, StringComparison.Ordinal) ? now.Message[at.Length..] : now.Message).TrimEnd('.');
        var reads = now is null ? "" : $" (the line now reads as {reason})";
        return new($"{at}the file changed during the replay: this forward pass no longer holds what it held when the replay began{reads}.", now);
    }
}
