using System.Text.Json;

namespace MoeGpuStats.Serialization;

/// <summary>
/// Counts a JSON text's tokens before a <see cref="JsonDocument"/> of it is built. A document keeps 12 bytes a
/// token, and a file of small numbers (<c>0,0,0,…</c>) has one every 2 bytes: a 128 MB file of zeros took 2.8 GB.
/// Each reader of a whole document refuses more tokens than the largest input it takes holds.
/// </summary>
internal static class JsonTokenCount
{
    /// <summary>
    /// Tokens (values, property names and the ends of objects and arrays) in <paramref name="json"/>, counted up to
    /// one past <paramref name="limit"/>; malformed JSON is counted up to where it breaks, for the parser to report.
    /// </summary>
    public static long UpTo(ReadOnlySpan<byte> json, long limit)
    {
        var reader = new Utf8JsonReader(json);
        var tokens = 0L;
        try
        {
            while (tokens <= limit && reader.Read())
            {
                tokens++;
            }
        }
        catch (JsonException)
        {
        }

        return tokens;
    }

    /// <summary>
    /// Refuses the value <paramref name="reader"/> (a copy; the caller's reader does not move) starts with where it
    /// holds more than <see cref="RoutingStatsFile.MaxJsonTokens"/> tokens: a snapshot handed to <c>JsonSerializer</c>,
    /// as one received from another rank, is bounded as a snapshot file is. A converter's reader holds its whole value.
    /// </summary>
    /// <exception cref="JsonException">More tokens than a snapshot holds.</exception>
    public static void CheckSnapshotValue(Utf8JsonReader reader)
    {
        if (reader.TokenType is not (JsonTokenType.StartObject or JsonTokenType.StartArray))
        {
            return;
        }

        var depth = reader.CurrentDepth;
        var tokens = 1L;
        while (reader.Read())
        {
            if (++tokens > RoutingStatsFile.MaxJsonTokens)
            {
                throw new JsonException(
                    $"The snapshot holds more than {RoutingStatsFile.MaxJsonTokens:N0} JSON tokens (values, field names and the ends of objects and arrays); a routing statistics snapshot holds at most that many.");
            }

            if (reader.CurrentDepth == depth && reader.TokenType is JsonTokenType.EndObject or JsonTokenType.EndArray)
            {
                return;
            }
        }
    }
}
