using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// One line of a JSON-lines routing trace, its fields checked: the layer, the forward pass's id, the
/// index of its first token in the pass, and its top-k ids, one token's (<c>[3, 7]</c>) or a pass's
/// (<c>[[3, 7], [1, 2]]</c>). Request ids and gate weights are checked for shape and otherwise unused.
/// Each field has the spellings serving hooks write (<see cref="Spellings"/>); other fields are ignored.
/// </summary>
internal readonly struct JsonTraceLine
{
    public static readonly string[] LayerNames = ["layer", "layer_id", "layer_idx"];
    public static readonly string[] IdsNames = ["topk_ids", "topk_indices", "selected_experts", "routed_experts", "expert_ids"];
    public static readonly string[] PassNames = ["step", "forward_pass", "pass", "forward_pass_id"];
    public static readonly string[] PositionNames = ["position", "token_pos", "token_index"];
    public static readonly string[] RequestNames = ["request_id", "req_id"];
    public static readonly string[] WeightsNames = ["gate_weights", "topk_weights", "routing_weights"];

    /// <summary>The fields replay reads, in the order their problems are told; indexed by the constants below.</summary>
    private static readonly string[][] Fields = [LayerNames, IdsNames, PassNames, PositionNames, RequestNames, WeightsNames];

    private const int LayerField = 0, IdsField = 1, PassField = 2, PositionField = 3, RequestField = 4, WeightsField = 5;

    private readonly int _idsStart;
    private readonly int _idsLength;

    private JsonTraceLine(Range ids, int lineLength, int tokens, int topK, long maxId, (string Name, int Value)? layer, (string Name, PassId Id, string Text)? pass, (string Name, long Value)? position)
    {
        (_idsStart, _idsLength) = ids.GetOffsetAndLength(lineLength);
        Tokens = tokens;
        TopK = topK;
        MaxId = maxId;
        Layer = layer;
        Pass = pass;
        Position = position;
    }

    /// <summary>Every field replay reads with its other spellings, for the help: <c>layer (or layer_id, layer_idx); ...</c>.</summary>
    public static string Spellings =>
        string.Join("; ", new[] { IdsNames, LayerNames, PassNames, PositionNames, RequestNames, WeightsNames }.Select(names => $"{names[0]} (or {string.Join(", ", names[1..])})"));

    /// <summary>Tokens on the line, at least 1.</summary>
    public int Tokens { get; }

    /// <summary>Ids per token, at least 1.</summary>
    public int TopK { get; }

    /// <summary>The largest id, -1 if none is 0 or more.</summary>
    public long MaxId { get; }

    /// <summary>The MoE layer, and the field's spelling; null without one.</summary>
    public (string Name, int Value)? Layer { get; }

    /// <summary>The forward pass's id: the spelling, the id as a key (3 and "3" differ), and the id as written.</summary>
    public (string Name, PassId Id, string Text)? Pass { get; }

    /// <summary>The index of the line's first token in its forward pass, and the spelling; null without one.</summary>
    public (string Name, long Value)? Position { get; }

    /// <summary>
    /// Parses one line of <paramref name="path"/>, number <paramref name="number"/>. The line is read as it
    /// stands, value by value, without a document of it: a prefill's line of millions of ids costs its own
    /// bytes, not the dozen bytes a value that a parsed document keeps.
    /// </summary>
    /// <param name="line">The line's bytes, UTF-8.</param>
    /// <param name="path">The file, for messages.</param>
    /// <param name="number">The line's number, for messages.</param>
    /// <param name="topK">The trace's k, from its first token; 0 before it.</param>
    /// <exception cref="InvalidDataException">Not a JSON object, or a field replay reads that is missing or malformed; one line starting <c>path:number:</c>.</exception>
    public static JsonTraceLine Parse(ReadOnlySpan<byte> line, string path, long number, int topK)
    {
        var where = $"{path}:{number}";
        if (!Utf8.IsValid(line))
        {
            // The JSON reader leaves strings' UTF-8 unchecked until they are read: check it once, here.
            throw new InvalidDataException($"{where}: not UTF-8 text{MoeGpuStats.Serialization.CompressedData.Hint(line)}; JSON lines are UTF-8.");
        }

        var fields = new FieldValue?[Fields.Length];
        var twice = new string?[Fields.Length];
        JsonTokenType root;
        var unreadableName = false;
        try
        {
            var reader = new Utf8JsonReader(line);
            reader.Read();
            root = reader.TokenType;
            if (root == JsonTokenType.StartObject)
            {
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var (field, name) = FieldOf(ref reader, ref unreadableName);
                    reader.Read();
                    var start = (int)reader.TokenStartIndex;
                    reader.Skip();
                    if (field < 0)
                    {
                        continue;
                    }

                    if (fields[field] is { } first)
                    {
                        twice[field] ??= first.Name == name
                            ? $"{where}: {name} twice; give it once."
                            : $"{where}: both {first.Name} and {name}, two names of one field; give one.";
                    }
                    else
                    {
                        fields[field] = new FieldValue(name, start..(int)reader.BytesConsumed);
                    }
                }
            }
            else
            {
                reader.Skip();
            }

            // Anything after the value is refused by the reader itself ("invalid after a single JSON value").
            reader.Read();
        }
        catch (JsonException exception)
        {
            if (number == 1 && line.Trim(" \t\r"u8) is [(byte)'{' or (byte)'['])
            {
                throw new InvalidDataException($"{where}: not JSON lines: the file starts a JSON value over several lines, as a snapshot that --save writes (report reads those); a trace holds one object with topk_ids per line.");
            }

            var nonFinite = line.IndexOf("NaN"u8) >= 0 || line.IndexOf("Infinity"u8) >= 0
                ? " NaN and Infinity, which Python's json.dumps writes for non-finite floats, are not JSON, and ids and weights are finite numbers: dump with allow_nan=False to find where they come from."
                : "";
            throw new InvalidDataException($"{where}: not JSON ({ErrorText.JsonReason(exception)}, at byte {exception.BytePositionInLine + 1}); a line holds one object with topk_ids.{nonFinite}", exception);
        }

        try
        {
            if (root != JsonTokenType.StartObject)
            {
                throw new InvalidDataException($"{where}: a JSON {JsonText.KindOf(root).ToString().ToLowerInvariant()}, not an object; a line holds one object with topk_ids.");
            }

            if (unreadableName)
            {
                throw new InvalidDataException(SurrogateHalf(where));
            }

            if (twice.FirstOrDefault(message => message is not null) is { } duplicate)
            {
                throw new InvalidDataException(duplicate);
            }

            return Read(line, fields, where, topK);
        }
        catch (InvalidOperationException exception)
        {
            // .NET reads a string lazily and refuses one whose escapes are half a surrogate pair, as Python's json.dumps writes them.
            throw new InvalidDataException(SurrogateHalf(where), exception);
        }
    }

    private static string SurrogateHalf(string where) =>
        $"{where}: a string or field name escapes half a UTF-16 surrogate pair (such as \\ud800 alone), which is no text; write the line's strings as text.";

    /// <summary>
    /// Writes the line's <c>Tokens × TopK</c> ids to <paramref name="destination"/>; ids outside the int32 range
    /// become <see cref="NpyIds.OutOfRangeId"/>. <paramref name="line"/> is the line this was parsed from.
    /// </summary>
    public void CopyIds(ReadOnlySpan<byte> line, Span<int> destination)
    {
        // Parse checked the shape: the ids' numbers, in order, are the tokens' ids.
        var reader = new Utf8JsonReader(line.Slice(_idsStart, _idsLength));
        var at = 0;
        while (reader.Read())
        {
            if (reader.TokenType == JsonTokenType.Number)
            {
                var value = reader.GetInt64();
                destination[at++] = value is >= int.MinValue and <= int.MaxValue ? (int)value : NpyIds.OutOfRangeId;
            }
        }
    }

    /// <summary>The field of <see cref="Fields"/> the reader's property names, with its spelling; -1 (and "") for a field replay ignores.</summary>
    private static (int Field, string Name) FieldOf(ref Utf8JsonReader reader, ref bool unreadable)
    {
        // An escaped name is checked and compared as written, never unescaped whole: a name of any length is one line's bytes, not a string as long.
        if (reader.ValueIsEscaped && !PairsItsSurrogates(reader.ValueSpan))
        {
            unreadable = true;
            return (-1, "");
        }

        for (var field = 0; field < Fields.Length; field++)
        {
            foreach (var name in Fields[field])
            {
                if (reader.ValueTextEquals(name))
                {
                    return (field, name);
                }
            }
        }

        return (-1, "");
    }

    /// <summary>
    /// Whether the <c>\u</c> escapes of a string as written (escapes the reader has checked) pair every UTF-16
    /// surrogate, so that it unescapes to text: what <see cref="Utf8JsonReader.GetString"/> refuses, told without the string.
    /// </summary>
    private static bool PairsItsSurrogates(ReadOnlySpan<byte> escaped)
    {
        var awaitingLow = false;
        for (var at = 0; at < escaped.Length; at++)
        {
            var isUnit = escaped[at] == (byte)'\\' && escaped[++at] == (byte)'u';
            if (!isUnit)
            {
                if (awaitingLow)
                {
                    return false;
                }

                continue;
            }

            Utf8Parser.TryParse(escaped.Slice(at + 1, 4), out ushort unit, out _, 'X');
            at += 4;
            if (awaitingLow != char.IsLowSurrogate((char)unit))
            {
                return false;
            }

            awaitingLow = char.IsHighSurrogate((char)unit);
        }

        return !awaitingLow;
    }

    private static JsonTraceLine Read(ReadOnlySpan<byte> line, FieldValue?[] fields, string where, int topK)
    {
        if (fields[IdsField] is not { } ids)
        {
            throw new InvalidDataException($"{where}: no topk_ids (nor {string.Join(", ", IdsNames[1..])}); each line holds top-k ids.");
        }

        var (tokens, k, nested, maxId) = ReadIds(ids.Name, line[ids.Value], where, topK);
        if (fields[WeightsField] is { } weights)
        {
            CheckWeights(weights.Name, line[weights.Value], ids.Name, nested, tokens, k, where);
        }

        if (fields[RequestField] is { } request)
        {
            CheckRequest(request.Name, line[request.Value], nested, tokens, where);
        }

        return new JsonTraceLine(
            ids.Value,
            line.Length,
            tokens,
            k,
            maxId,
            fields[LayerField] is { } l ? (l.Name, LayerIndex(l.Name, line[l.Value], where)) : null,
            fields[PassField] is { } p ? (p.Name, PassKey(p.Name, line[p.Value], where), JsonText.Printable(line[p.Value])) : null,
            fields[PositionField] is { } at ? (at.Name, WholeNumber(at.Name, line[at.Value], where, "the index of the line's first token in its forward pass")) : null);
    }

    /// <summary>Checks one token's ids or a pass's; returns tokens, k, whether nested, and the largest id.</summary>
    private static (int Tokens, int TopK, bool Nested, long MaxId) ReadIds(string name, ReadOnlySpan<byte> ids, string where, int topK)
    {
        const string Shape = "give one token's k ids, [3, 7], or a forward pass's, [[3, 7], [1, 2]]";
        var first = new Elements(ids);
        if (Kind(ids) != JsonTokenType.StartArray || !first.MoveNext())
        {
            throw new InvalidDataException($"{where}: {name} is {JsonText.Printable(ids)}; {Shape}.");
        }

        var nested = Kind(first.Current) == JsonTokenType.StartArray;
        var maxId = -1L;
        var tokens = 0;
        var pass = new Elements(ids);
        while (nested ? pass.MoveNext() : tokens == 0)
        {
            var token = nested ? pass.Current : ids;
            if (Kind(token) != JsonTokenType.StartArray)
            {
                throw new InvalidDataException($"{where}: {Label(name, nested, tokens)} is {JsonText.Printable(token)}; in a list of tokens each token is a list of k ids ({Shape}).");
            }

            // A token's count is told before a bad id in it, so the id's message waits for the count.
            var count = 0;
            string? badId = null;
            foreach (var id in new Elements(token))
            {
                if (TryGetInt64(id, out var value))
                {
                    maxId = Math.Max(maxId, value);
                }
                else
                {
                    badId ??= Kind(id) == JsonTokenType.Number && IsWholeNumber(id)
                        ? $"{where}: {Label(name, nested, tokens)}[{count}] is {JsonText.Printable(id)}, out of range: an id lies in [{long.MinValue}, {long.MaxValue}] (one past the experts counts as invalid), -1 for an empty slot."
                        : $"{where}: {Label(name, nested, tokens)}[{count}] is {JsonText.Printable(id)}; ids are whole numbers{JsonText.FloatFormHint(id)}, -1 for an empty slot.";
                }

                count++;
            }

            if (count == 0 || (topK > 0 && count != topK))
            {
                throw new InvalidDataException(count == 0
                    ? $"{where}: {Label(name, nested, tokens)} holds no ids; a token has its k ids."
                    : $"{where}: {Label(name, nested, tokens)} has {Counted.Of(count, "id")}, the trace's other tokens have {topK}.");
            }

            if (badId is not null)
            {
                throw new InvalidDataException(badId);
            }

            topK = count;
            tokens++;
        }

        return (tokens, topK, nested, maxId);
    }

    /// <summary>How a message names token <paramref name="token"/> of a field: <c>topk_ids[3]</c>, or the field alone for one token's line.</summary>
    private static string Label(string name, bool nested, int token) => nested ? $"{name}[{token}]" : name;

    /// <summary>Gate weights must be finite numbers (as doubles) in the ids' shape; replay does not use them.</summary>
    private static void CheckWeights(string name, ReadOnlySpan<byte> weights, string idsName, bool nested, int tokens, int topK, string where)
    {
        var rowsNested = nested && Kind(weights) == JsonTokenType.StartArray;
        var rowCount = rowsNested ? Count(weights) : 1;
        if (rowCount != tokens)
        {
            throw new InvalidDataException($"{where}: {name} has {Counted.Of(rowCount, "token")}, {idsName} has {tokens}; give one weight per id, in the ids' shape.");
        }

        var rows = new Elements(weights);
        for (var token = 0; rowsNested ? rows.MoveNext() : token == 0; token++)
        {
            var row = rowsNested ? rows.Current : weights;
            if (Kind(row) != JsonTokenType.StartArray || Count(row) != topK)
            {
                throw new InvalidDataException($"{where}: {Label(name, nested, token)} is {JsonText.Printable(row)}; give {Counted.Of(topK, "weight")}, one per id of {idsName}{(nested ? $"[{token}]" : "")}.");
            }

            var slot = 0;
            foreach (var weight in new Elements(row))
            {
                if (Kind(weight) != JsonTokenType.Number)
                {
                    throw new InvalidDataException($"{where}: {Label(name, nested, token)}[{slot}] is {JsonText.Printable(weight)}; weights are numbers.");
                }

                if (!Utf8Parser.TryParse(weight, out double value, out _) || !double.IsFinite(value))
                {
                    throw new InvalidDataException($"{where}: {Label(name, nested, token)}[{slot}] is {JsonText.Printable(weight)}, beyond a double's range; weights are finite numbers.");
                }

                slot++;
            }
        }
    }

    /// <summary>A request id is a string or a whole number; a pass's line may give one per token.</summary>
    private static void CheckRequest(string name, ReadOnlySpan<byte> request, bool nested, int tokens, string where)
    {
        var rule = $"give a string or a whole number{(nested ? ", or a list of them with one per token" : "")}";
        if (nested && Kind(request) == JsonTokenType.StartArray)
        {
            var count = Count(request);
            if (count != tokens)
            {
                throw new InvalidDataException($"{where}: {name} has {Counted.Of(count, "value")} for {Counted.Of(tokens, "token")}; {rule}.");
            }

            var token = 0;
            foreach (var one in new Elements(request))
            {
                if (!IsRequestId(one))
                {
                    throw new InvalidDataException($"{where}: {name}[{token}] is {JsonText.Printable(one)}; {rule}.");
                }

                token++;
            }
        }
        else if (!IsRequestId(request))
        {
            throw new InvalidDataException($"{where}: {name} is {JsonText.Printable(request)}; {rule}.");
        }
    }

    private static bool IsRequestId(ReadOnlySpan<byte> value) =>
        Kind(value) == JsonTokenType.String || TryGetInt64(value, out _);

    private static int LayerIndex(string name, ReadOnlySpan<byte> value, string where)
    {
        var max = ModelRoutingStatsOptions.MaxLayers - 1;
        return TryGetInt64(value, out var layer) && layer is >= 0 && layer <= max
            ? (int)layer
            : throw new InvalidDataException($"{where}: {name} is {JsonText.Printable(value)}; give the MoE layer's index, a whole number from 0 to {max:N0} (a model holds at most {max + 1:N0} layers){JsonText.FloatFormHint(value)}.");
    }

    /// <summary>
    /// The longest string pass id kept as written; a longer one is kept as its SHA-256, so that the ids seen, one
    /// per pass while the trace is read, cost at most some 200 bytes each, however long the ids.
    /// </summary>
    private const int MaxPassKeyChars = 64;

    /// <summary>
    /// The longest string pass id, in bytes as written: ids are request ids and step numbers, and every line's is
    /// read, at the index and again at the replay, so a longer one is refused before it is unescaped.
    /// </summary>
    private const int MaxPassIdBytes = 1024;

    private static PassId PassKey(string name, ReadOnlySpan<byte> value, string where)
    {
        if (Kind(value) == JsonTokenType.String)
        {
            var written = value.Length - 2;
            if (written > MaxPassIdBytes)
            {
                throw new InvalidDataException($"{where}: {name} is a string of {written:N0} bytes ({JsonText.Printable(value)}); a forward pass's id is a whole number or a string of at most {MaxPassIdBytes:N0} bytes as written.");
            }

            var reader = new Utf8JsonReader(value);
            reader.Read();
            var id = reader.GetString()!;
            return new PassId(0, id.Length > MaxPassKeyChars ? "h" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(id))) : "s" + id);
        }

        return TryGetInt64(value, out var number)
            ? new PassId(number, null)
            : throw new InvalidDataException($"{where}: {name} is {JsonText.Printable(value)}; give the forward pass's id, a whole number or a string.");
    }

    private static long WholeNumber(string name, ReadOnlySpan<byte> value, string where, string what) =>
        TryGetInt64(value, out var number) && number >= 0
            ? number
            : throw new InvalidDataException($"{where}: {name} is {JsonText.Printable(value)}; give {what}, a whole number from 0{JsonText.FloatFormHint(value)}.");

    /// <summary>The kind of the JSON value whose text is <paramref name="value"/>, told by its first byte.</summary>
    private static JsonTokenType Kind(ReadOnlySpan<byte> value) => value[0] switch
    {
        (byte)'{' => JsonTokenType.StartObject,
        (byte)'[' => JsonTokenType.StartArray,
        (byte)'"' => JsonTokenType.String,
        (byte)'t' => JsonTokenType.True,
        (byte)'f' => JsonTokenType.False,
        (byte)'n' => JsonTokenType.Null,
        _ => JsonTokenType.Number,
    };

    /// <summary>A JSON number that is an int64 as written (what <see cref="JsonElement.TryGetInt64"/> accepts); false for any other value.</summary>
    private static bool TryGetInt64(ReadOnlySpan<byte> value, out long number)
    {
        number = 0;
        return Kind(value) == JsonTokenType.Number && Utf8Parser.TryParse(value, out number, out var used) && used == value.Length;
    }

    /// <summary>Whether a JSON number's text is a whole number as written (digits, a leading minus): one too large for int64, not a fraction.</summary>
    private static bool IsWholeNumber(ReadOnlySpan<byte> number)
    {
        var digits = number.StartsWith("-"u8) ? number[1..] : number;
        return !digits.IsEmpty && !digits.ContainsAnyExceptInRange((byte)'0', (byte)'9');
    }

    private static int Count(ReadOnlySpan<byte> array)
    {
        var count = 0;
        foreach (var element in new Elements(array))
        {
            count++;
        }

        return count;
    }

    /// <summary>Where a field's value lies in its line, and the field's spelling.</summary>
    private readonly record struct FieldValue(string Name, Range Value);

    /// <summary>The elements of a JSON array's text, each as its own text, read one at a time.</summary>
    private ref struct Elements
    {
        private readonly ReadOnlySpan<byte> _array;
        private Utf8JsonReader _reader;

        public Elements(ReadOnlySpan<byte> array)
        {
            _array = array;
            _reader = new Utf8JsonReader(array);
            _reader.Read();
        }

        public ReadOnlySpan<byte> Current { get; private set; }

        public readonly Elements GetEnumerator() => this;

        public bool MoveNext()
        {
            if (!_reader.Read() || _reader.TokenType is JsonTokenType.EndArray or JsonTokenType.EndObject)
            {
                return false;
            }

            var start = (int)_reader.TokenStartIndex;
            _reader.Skip();
            Current = _array[start..(int)_reader.BytesConsumed];
            return true;
        }
    }

    /// <summary>
    /// A forward pass's id as the passes seen keep it, one per pass: a whole number as itself, with no string
    /// (most traces number their steps); a string as <c>"s"</c> and the id, or past 64 characters <c>"h"</c> and its SHA-256.
    /// </summary>
    internal readonly record struct PassId(long Number, string? Key);
}
