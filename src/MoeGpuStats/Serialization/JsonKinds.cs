using System.Text.Json;

namespace MoeGpuStats.Serialization;

/// <summary>How the readers' messages name the kind of a JSON value they did not expect.</summary>
internal static class JsonKinds
{
    /// <summary>The kind in a phrase with its article ("a number", "an object"); the literals bare ("null", "true").</summary>
    public static string Phrase(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        _ => "null",
    };
}
