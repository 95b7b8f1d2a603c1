using System.Text.Json;
using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>
/// Counts a snapshot's JSON tokens before a <see cref="JsonDocument"/> of it is built. A document keeps 12 bytes a
/// token, and a file of small numbers (<c>0,0,0,…</c>) has one every 2 bytes: a 128 MB file of zeros took 2.8 GB.
/// A file and a value handed to <c>JsonSerializer</c> (one received from another rank) are bounded alike, by
/// <see cref="RoutingStatsFile.MaxJsonTokens"/>.
/// </summary>
internal static class JsonTokenCount
{
    /// <summary>Refuses, for <c>JsonSerializer</c>, a value that holds more tokens than a snapshot (<see cref="ExceedsSnapshot(Utf8JsonReader)"/>).</summary>
    /// <exception cref="JsonException">More tokens than a snapshot holds.</exception>
    public static void CheckSnapshotValue(Utf8JsonReader reader)
    {
        if (ExceedsSnapshot(reader))
        {
            throw new JsonException(
                Invariant($"The snapshot holds more than {RoutingStatsFile.MaxJsonTokens:N0} JSON tokens (values, field names and the ends of objects and arrays); a routing statistics snapshot holds at most that many."));
        }
    }

    /// <summary>Whether the JSON value <paramref name="json"/> holds more tokens than a snapshot; as <see cref="ExceedsSnapshot(Utf8JsonReader)"/>.</summary>
    public static bool ExceedsSnapshot(ReadOnlySpan<byte> json) => ExceedsSnapshot(new Utf8JsonReader(json));

    /// <summary>
    /// Whether the value <paramref name="reader"/> is at (or, before its first token, starts with) holds more than
    /// <see cref="RoutingStatsFile.MaxJsonTokens"/> tokens: values, field names and the ends of objects and arrays.
    /// The reader is a copy (the caller's does not move) and holds the whole value, as a converter's does; malformed
    /// JSON is counted up to where it breaks, for the parser to report.
    /// </summary>
    public static bool ExceedsSnapshot(Utf8JsonReader reader)
    {
        try
        {
            if ((reader.TokenType == JsonTokenType.None && !reader.Read())
                || reader.TokenType is not (JsonTokenType.StartObject or JsonTokenType.StartArray))
            {
                return false;
            }

            var depth = reader.CurrentDepth;
            for (var tokens = 2L; reader.Read(); tokens++)
            {
                if (tokens > RoutingStatsFile.MaxJsonTokens)
                {
                    return true;
                }

                if (reader.CurrentDepth == depth && reader.TokenType is JsonTokenType.EndObject or JsonTokenType.EndArray)
                {
                    return false;
                }
            }
        }
        catch (JsonException)
        {
        }

        return false;
    }
}
