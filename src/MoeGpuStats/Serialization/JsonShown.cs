using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>
/// How the readers show a value of the file in a message: its kind, or its first characters as written, never the
/// whole of it: a message holding a long value whole would be as large as the value, and as many lines.
/// </summary>
internal static class JsonShown
{
    /// <summary>The most characters a message shows of a value: enough to recognise it, few enough for one line.</summary>
    private const int MaxChars = 40;

    /// <summary>
    /// A string (in its quotes), number or literal as written, cut to <see cref="MaxChars"/>; an array or an object by
    /// its kind and size, which the parsed document holds without a walk (an indented one spans lines as written).
    /// </summary>
    public static string Value(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Array => Invariant($"{Kind(JsonValueKind.Array)} of {Plural.Of(element.GetArrayLength(), "value")}"),
        JsonValueKind.Object => Invariant($"{Kind(JsonValueKind.Object)} of {Plural.Of(element.GetPropertyCount(), "field")}"),
        _ => Text(JsonMarshal.GetRawUtf8Value(element)),
    };

    /// <summary>A kind of value the reader did not expect, in a phrase with its article ("a number", "an object"); the literals bare ("null", "true").</summary>
    public static string Kind(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        _ => "null",
    };

    /// <summary>
    /// UTF-8 as the file has it (a value, a field name), cut to <see cref="MaxChars"/> with "..." where longer. Only the
    /// bytes those characters can take are decoded. JSON escapes every line break in a string but lets it hold U+009B (a
    /// terminal's CSI) and the bidirectional overrides unescaped: those are escaped here (<see cref="UnsafeText.Escaped"/>).
    /// </summary>
    public static string Text(ReadOnlySpan<byte> utf8)
    {
        // A UTF-16 character takes at most 3 bytes of UTF-8 (a surrogate pair 4 for two), and a byte that is not UTF-8
        // decodes to one: a value longer than these bytes decodes to more than MaxChars.
        return UnsafeText.Escaped(ShortText.Of(Encoding.UTF8.GetString(utf8[..Math.Min(utf8.Length, (MaxChars + 1) * 3)]), MaxChars));
    }
}
