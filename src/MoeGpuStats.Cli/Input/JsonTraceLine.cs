using System.Globalization;
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

    private JsonTraceLine(JsonElement ids, bool nested, int tokens, int topK, long maxId, (string Name, int Value)? layer, (string Name, string Key, string Text)? pass, (string Name, long Value)? position)
    {
        Ids = ids;
        Nested = nested;
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

    /// <summary>The ids: one token's k, or (<see cref="Nested"/>) a list of tokens of k each; valid while the line's document is.</summary>
    public JsonElement Ids { get; }

    public bool Nested { get; }

    /// <summary>Tokens on the line, at least 1.</summary>
    public int Tokens { get; }

    /// <summary>Ids per token, at least 1.</summary>
    public int TopK { get; }

    /// <summary>The largest id, -1 if none is 0 or more.</summary>
    public long MaxId { get; }

    /// <summary>The MoE layer, and the field's spelling; null without one.</summary>
    public (string Name, int Value)? Layer { get; }

    /// <summary>The forward pass's id: the spelling, a key equal for equal ids (3 and "3" differ), and the id as written.</summary>
    public (string Name, string Key, string Text)? Pass { get; }

    /// <summary>The index of the line's first token in its forward pass, and the spelling; null without one.</summary>
    public (string Name, long Value)? Position { get; }

    /// <summary>Parses one line of <paramref name="path"/>, number <paramref name="number"/>.</summary>
    /// <param name="line">The line's bytes, UTF-8.</param>
    /// <param name="path">The file, for messages.</param>
    /// <param name="number">The line's number, for messages.</param>
    /// <param name="topK">The trace's k, from its first token; 0 before it.</param>
    /// <param name="document">The parsed line, which <see cref="Ids"/> reads from: the caller disposes it.</param>
    /// <exception cref="InvalidDataException">Not a JSON object, or a field replay reads that is missing or malformed; one line starting <c>path:number:</c>.</exception>
    public static JsonTraceLine Parse(ReadOnlySpan<byte> line, string path, long number, int topK, out JsonDocument document)
    {
        var where = $"{path}:{number}";
        if (!Utf8.IsValid(line))
        {
            // The JSON reader leaves strings' UTF-8 unchecked until they are read: check it once, here.
            throw new InvalidDataException($"{where}: not UTF-8 text; JSON lines are UTF-8.");
        }

        try
        {
            var reader = new Utf8JsonReader(line);
            document = JsonDocument.ParseValue(ref reader);
            if (reader.Read())
            {
                document.Dispose();
                throw new InvalidDataException($"{where}: more than one JSON value; a line holds one object.");
            }
        }
        catch (JsonException exception)
        {
            if (number == 1 && line.Trim(" \t\r"u8) is [(byte)'{' or (byte)'['])
            {
                throw new InvalidDataException($"{where}: not JSON lines: the file starts a JSON value over several lines, as a snapshot that --save writes (report reads those); a trace holds one object with topk_ids per line.");
            }

            var message = exception.Message.Split(" LineNumber:", 2)[0].Trim();
            var nonFinite = line.IndexOf("NaN"u8) >= 0 || line.IndexOf("Infinity"u8) >= 0
                ? " NaN and Infinity, which Python's json.dumps writes for non-finite floats, are not JSON, and ids and weights are finite numbers: dump with allow_nan=False to find where they come from."
                : "";
            throw new InvalidDataException($"{where}: not JSON ({message} at byte {exception.BytePositionInLine + 1}); a line holds one object with topk_ids.{nonFinite}", exception);
        }

        try
        {
            return Read(document.RootElement, where, topK);
        }
        catch (InvalidOperationException exception)
        {
            // .NET reads a string lazily and refuses one whose escapes are half a surrogate pair, as Python's json.dumps writes them.
            document.Dispose();
            throw new InvalidDataException($"{where}: a string or field name escapes half a UTF-16 surrogate pair (such as \\ud800 alone), which is no text; write the line's strings as text.", exception);
        }
        catch
        {
            document.Dispose();
            throw;
        }
    }

    /// <summary>Writes the line's <c>Tokens × TopK</c> ids to <paramref name="destination"/>; ids outside the int32 range become <see cref="NpyIds.OutOfRangeId"/>.</summary>
    public void CopyIds(Span<int> destination)
    {
        var at = 0;
        foreach (var token in Nested ? Ids.EnumerateArray() : Enumerate(Ids))
        {
            foreach (var id in token.EnumerateArray())
            {
                var value = id.GetInt64();
                destination[at++] = value is >= int.MinValue and <= int.MaxValue ? (int)value : NpyIds.OutOfRangeId;
            }
        }
    }

    private static IEnumerable<JsonElement> Enumerate(JsonElement one)
    {
        yield return one;
    }

    private static JsonTraceLine Read(JsonElement root, string where, int topK)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"{where}: a JSON {root.ValueKind.ToString().ToLowerInvariant()}, not an object; a line holds one object with topk_ids.");
        }

        var layer = Find(root, LayerNames, where);
        var ids = Find(root, IdsNames, where);
        var pass = Find(root, PassNames, where);
        var position = Find(root, PositionNames, where);
        var request = Find(root, RequestNames, where);
        var weights = Find(root, WeightsNames, where);
        if (ids is not { } found)
        {
            throw new InvalidDataException($"{where}: no topk_ids (nor {string.Join(", ", IdsNames[1..])}); each line holds top-k ids.");
        }

        var (tokens, k, nested, maxId) = ReadIds(found.Name, found.Value, where, topK);
        if (weights is { } w)
        {
            CheckWeights(w.Name, w.Value, found.Name, nested, tokens, k, where);
        }

        if (request is { } r)
        {
            CheckRequest(r.Name, r.Value, nested, tokens, where);
        }

        return new JsonTraceLine(
            found.Value,
            nested,
            tokens,
            k,
            maxId,
            layer is { } l ? (l.Name, LayerIndex(l.Name, l.Value, where)) : null,
            pass is { } p ? (p.Name, PassKey(p.Name, p.Value, where), Printable(p.Value)) : null,
            position is { } at ? (at.Name, WholeNumber(at.Name, at.Value, where, "the index of the line's first token in its forward pass")) : null);
    }

    /// <summary>The one field of <paramref name="names"/> the object has, or null; two spellings of one field are refused.</summary>
    private static (string Name, JsonElement Value)? Find(JsonElement root, string[] names, string where)
    {
        (string Name, JsonElement Value)? found = null;
        foreach (var property in root.EnumerateObject())
        {
            if (Array.IndexOf(names, property.Name) < 0)
            {
                continue;
            }

            if (found is { } first)
            {
                throw new InvalidDataException(first.Name == property.Name
                    ? $"{where}: {property.Name} twice; give it once."
                    : $"{where}: both {first.Name} and {property.Name}, two names of one field; give one.");
            }

            found = (property.Name, property.Value);
        }

        return found;
    }

    /// <summary>Whether a JSON number's text is a whole number as written (digits, a leading minus): one too large for int64, not a fraction.</summary>
    private static bool IsWholeNumber(string text) => text.TrimStart('-').Length > 0 && text.TrimStart('-').All(char.IsAsciiDigit);

    /// <summary>Checks one token's ids or a pass's; returns tokens, k, whether nested, and the largest id.</summary>
    private static (int Tokens, int TopK, bool Nested, long MaxId) ReadIds(string name, JsonElement ids, string where, int topK)
    {
        const string Shape = "give one token's k ids, [3, 7], or a forward pass's, [[3, 7], [1, 2]]";
        if (ids.ValueKind != JsonValueKind.Array || ids.GetArrayLength() == 0)
        {
            throw new InvalidDataException($"{where}: {name} is {Printable(ids)}; {Shape}.");
        }

        var nested = ids[0].ValueKind == JsonValueKind.Array;
        var maxId = -1L;
        var tokens = 0;
        foreach (var token in nested ? ids.EnumerateArray() : Enumerate(ids))
        {
            var label = nested ? $"{name}[{tokens}]" : name;
            if (token.ValueKind != JsonValueKind.Array)
            {
                throw new InvalidDataException($"{where}: {label} is {Printable(token)}; in a list of tokens each token is a list of k ids ({Shape}).");
            }

            var count = token.GetArrayLength();
            if (count == 0 || (topK > 0 && count != topK))
            {
                throw new InvalidDataException(count == 0
                    ? $"{where}: {label} holds no ids; a token has its k ids."
                    : $"{where}: {label} has {Counted.Of(count, "id")}, the trace's other tokens have {topK}.");
            }

            topK = count;
            var slot = 0;
            foreach (var id in token.EnumerateArray())
            {
                if (id.ValueKind != JsonValueKind.Number || !id.TryGetInt64(out var value))
                {
                    throw new InvalidDataException(id.ValueKind == JsonValueKind.Number && IsWholeNumber(id.GetRawText())
                        ? $"{where}: {label}[{slot}] is {Printable(id)}, out of range: an id lies in [{long.MinValue:N0}, {long.MaxValue:N0}] (one past the experts counts as invalid), -1 for an empty slot."
                        : $"{where}: {label}[{slot}] is {Printable(id)}; ids are whole numbers, -1 for an empty slot.");
                }

                maxId = Math.Max(maxId, value);
                slot++;
            }

            tokens++;
        }

        return (tokens, topK, nested, maxId);
    }

    /// <summary>Gate weights must be numbers in the ids' shape; replay does not use them.</summary>
    private static void CheckWeights(string name, JsonElement weights, string idsName, bool nested, int tokens, int topK, string where)
    {
        var rows = nested && weights.ValueKind == JsonValueKind.Array ? weights.EnumerateArray().ToArray() : [weights];
        if (rows.Length != tokens)
        {
            throw new InvalidDataException($"{where}: {name} has {Counted.Of(rows.Length, "token")}, {idsName} has {tokens}; give one weight per id, in the ids' shape.");
        }

        for (var token = 0; token < rows.Length; token++)
        {
            var label = nested ? $"{name}[{token}]" : name;
            if (rows[token].ValueKind != JsonValueKind.Array || rows[token].GetArrayLength() != topK)
            {
                throw new InvalidDataException($"{where}: {label} is {Printable(rows[token])}; give {Counted.Of(topK, "weight")}, one per id of {idsName}{(nested ? $"[{token}]" : "")}.");
            }

            var slot = 0;
            foreach (var weight in rows[token].EnumerateArray())
            {
                if (weight.ValueKind != JsonValueKind.Number)
                {
                    throw new InvalidDataException($"{where}: {label}[{slot}] is {Printable(weight)}; weights are numbers.");
                }

                slot++;
            }
        }
    }

    /// <summary>A request id is a string or a whole number; a pass's line may give one per token.</summary>
    private static void CheckRequest(string name, JsonElement request, bool nested, int tokens, string where)
    {
        var rule = $"give a string or a whole number{(nested ? ", or a list of them with one per token" : "")}";
        if (nested && request.ValueKind == JsonValueKind.Array)
        {
            if (request.GetArrayLength() != tokens)
            {
                throw new InvalidDataException($"{where}: {name} has {Counted.Of(request.GetArrayLength(), "value")} for {Counted.Of(tokens, "token")}; {rule}.");
            }

            var token = 0;
            foreach (var one in request.EnumerateArray())
            {
                if (!IsRequestId(one))
                {
                    throw new InvalidDataException($"{where}: {name}[{token}] is {Printable(one)}; {rule}.");
                }

                token++;
            }
        }
        else if (!IsRequestId(request))
        {
            throw new InvalidDataException($"{where}: {name} is {Printable(request)}; {rule}.");
        }
    }

    private static bool IsRequestId(JsonElement value) =>
        value.ValueKind == JsonValueKind.String || (value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out _));

    private static int LayerIndex(string name, JsonElement value, string where)
    {
        var max = ModelRoutingStatsOptions.MaxLayers - 1;
        return value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var layer) && layer is >= 0 && layer <= max
            ? (int)layer
            : throw new InvalidDataException($"{where}: {name} is {Printable(value)}; give the MoE layer's index, a whole number from 0 to {max:N0} (a model holds at most {max + 1:N0} layers).");
    }

    /// <summary>
    /// The longest string pass id kept as written; a longer one is kept as its SHA-256, so that the ids seen, one
    /// per pass for the whole trace, cost a few dozen bytes each (2,000 ids of 200 KB took 1.2 GB).
    /// </summary>
    private const int MaxPassKeyChars = 64;

    private static string PassKey(string name, JsonElement value, string where) => value.ValueKind switch
    {
        JsonValueKind.String when value.GetString() is { Length: > MaxPassKeyChars } id => "h" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(id))),
        JsonValueKind.String => "s" + value.GetString(),
        JsonValueKind.Number when value.TryGetInt64(out var id) => "n" + id.ToString(CultureInfo.InvariantCulture),
        _ => throw new InvalidDataException($"{where}: {name} is {Printable(value)}; give the forward pass's id, a whole number or a string."),
    };

    private static long WholeNumber(string name, JsonElement value, string where, string what) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) && number >= 0
            ? number
            : throw new InvalidDataException($"{where}: {name} is {Printable(value)}; give {what}, a whole number from 0.");

    /// <summary>A value as written, cut to one short line.</summary>
    private static string Printable(JsonElement value) => NpyHeader.Printable(value.GetRawText());
}
