using System.Buffers.Text;
using System.Text;
using System.Text.Json;

namespace MoeGpuStats.Cli.Input;

/// <summary>What the readers that walk JSON token by token say of a value in their messages.</summary>
internal static class JsonText
{
    /// <summary>A value as written, cut to one short line (<see cref="NpyHeader.Printable"/>); only its first bytes are decoded, enough for what that shows.</summary>
    public static string Printable(ReadOnlySpan<byte> value) =>
        NpyHeader.Printable(Encoding.UTF8.GetString(value[..Math.Min(value.Length, 512)]));

    /// <summary>
    /// What a message that asks for a whole number adds where <paramref name="value"/> is a whole number in float form
    /// (2.0, 1e3, as <c>json.dump</c> of a float tensor writes): the form is what is refused, so it is named; empty for
    /// any other value (2.5 is refused for its value, which the message's rule names).
    /// </summary>
    public static string FloatFormHint(ReadOnlySpan<byte> value) =>
        value.IndexOfAny((byte)'.', (byte)'e', (byte)'E') >= 0
        && Utf8Parser.TryParse(value, out double number, out var consumed) && consumed == value.Length
        && double.IsFinite(number) && Math.Floor(number) == number
            ? ", written without a decimal point or exponent (1, not 1.0 or 1e0)"
            : "";

    /// <summary>The kind of the value a token starts, as <see cref="JsonValueKind"/> names it.</summary>
    public static JsonValueKind KindOf(JsonTokenType token) => token switch
    {
        JsonTokenType.StartObject => JsonValueKind.Object,
        JsonTokenType.StartArray => JsonValueKind.Array,
        JsonTokenType.String => JsonValueKind.String,
        JsonTokenType.Number => JsonValueKind.Number,
        JsonTokenType.True => JsonValueKind.True,
        JsonTokenType.False => JsonValueKind.False,
        _ => JsonValueKind.Null,
    };

    /// <summary>The value a token starts, in a phrase with its article ("a number", "an object", "null").</summary>
    public static string KindPhrase(JsonTokenType token) => Serialization.JsonShown.Kind(KindOf(token));

    /// <summary>The reader's current value as written, cut to one short line; the reader is left at the value's end.</summary>
    public static string RawValue(ref Utf8JsonReader reader, ReadOnlySpan<byte> json)
    {
        var start = (int)reader.TokenStartIndex;
        reader.Skip();
        return Printable(json[start..(int)reader.BytesConsumed]);
    }
}
