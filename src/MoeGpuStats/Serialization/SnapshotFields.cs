using System.Runtime.InteropServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>
/// The fields of a snapshot's objects (a layer's, its <c>routing_latency_stats</c> and <c>capacity_stats</c>, a
/// model's), refused past a few hundred, or with a name past a few hundred bytes, before any is looked up. The
/// seed's serde skips unknown fields, and so does this reader, but a lookup scans the object's fields (unescaping an
/// escaped name to compare it), so millions of unknown fields would cost seconds and gigabytes.
/// </summary>
internal static class SnapshotFields
{
    /// <summary>
    /// The most fields a snapshot object may have: 256. A layer's has 21 known fields, a model's 10: the margin
    /// keeps a file of a later version, with fields this one skips, readable.
    /// </summary>
    public const int MaxFields = 256;

    /// <summary>
    /// The longest field name, in bytes as written: 256. The longest known, <c>decayed_expert_utilization</c>, is 26,
    /// and 156 with every character escaped (<c>\u0064…</c>), which a name compared as text may be.
    /// </summary>
    public const int MaxNameBytes = 256;

    /// <summary>
    /// Refuses <paramref name="element"/>, an object, past <see cref="MaxFields"/> fields or with a name past
    /// <see cref="MaxNameBytes"/>; no name is read (the parsed document counts the fields, and holds each name's bytes).
    /// </summary>
    /// <param name="element">A snapshot's object.</param>
    /// <param name="prefix">The object's field as messages name what it holds ("capacity_stats."); empty for a snapshot's own.</param>
    public static void RefuseUnbounded(JsonElement element, string prefix)
    {
        var fields = element.GetPropertyCount();
        if (fields > MaxFields)
        {
            var subject = prefix.Length == 0 ? "The object" : Invariant($"The object '{prefix.TrimEnd('.')}'");
            throw new JsonException(
                Invariant($"{subject} holds {fields:N0} fields; a snapshot's objects hold at most {MaxFields:N0} (their known fields, 21 at most, and a few unknown ones, which are skipped)."));
        }

        foreach (var property in element.EnumerateObject())
        {
            var name = JsonMarshal.GetRawUtf8PropertyName(property);
            if (name.Length > MaxNameBytes)
            {
                throw new JsonException(
                    Invariant($"The field name '{prefix}{JsonShown.Text(name)}' is {name.Length:N0} bytes long; a snapshot's field names are at most {MaxNameBytes:N0} bytes as written."));
            }
        }
    }

    /// <summary>
    /// <see cref="RefuseUnbounded"/>, then refuses a field given twice in <paramref name="element"/>: the reader would
    /// take one of them without a word and the seed's serde refuses the file, so two readers would see two states.
    /// Names are compared as text (<c>"a\u0062"</c> is <c>"ab"</c>), which the bounds keep to a few kilobytes.
    /// </summary>
    /// <param name="element">A snapshot's object.</param>
    /// <param name="prefix">As for <see cref="RefuseUnbounded"/>.</param>
    public static void RefuseRepeated(JsonElement element, string prefix)
    {
        RefuseUnbounded(element, prefix);
        var seen = new HashSet<string>(element.GetPropertyCount(), StringComparer.Ordinal);
        foreach (var property in element.EnumerateObject())
        {
            var name = NameOf(property, prefix);
            if (!seen.Add(name))
            {
                // Escaped as JSON escapes it, so that a name with a line break keeps the message one line.
                var shown = JsonEncodedText.Encode(ShortText.Of(name, 40), JavaScriptEncoder.UnsafeRelaxedJsonEscaping);
                throw new JsonException(Invariant($"The field '{prefix}{shown}' is given twice; a snapshot gives each field once."));
            }
        }
    }

    /// <summary>
    /// The field's name; refused where it is not text: the parser leaves a name's UTF-8 (and an escaped half of a
    /// surrogate pair) unchecked until it is read, which fails with no word of JSON or of where.
    /// </summary>
    private static string NameOf(JsonProperty property, string prefix)
    {
        try
        {
            return property.Name;
        }
        catch (InvalidOperationException)
        {
            throw new JsonException(Invariant($"A field name{(prefix.Length > 0 ? $" in '{prefix.TrimEnd('.')}'" : "")} is not text (invalid UTF-8, or half of a surrogate pair escaped); a snapshot is UTF-8 JSON."));
        }
    }
}
