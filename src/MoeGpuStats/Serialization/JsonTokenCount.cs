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
}
