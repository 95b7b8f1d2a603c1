using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>
/// A stream read whole, never past a bound: refused before reading where its length is past the bound, and while
/// reading once more bytes come than the bound, whatever the length said (a file that grew after its length was asked,
/// a pipe or a device without one). What is allocated is bounded by the bound, never by the file.
/// </summary>
internal static class BoundedRead
{
    private const int ChunkBytes = 81920;

    /// <summary>Every byte of <paramref name="stream"/>, at most <paramref name="mostBytes"/> of them.</summary>
    /// <param name="stream">Read from its position to its end.</param>
    /// <param name="mostBytes">The most bytes read, at most <see cref="Array.MaxLength"/>.</param>
    /// <param name="tooLarge">The exception for a stream past <paramref name="mostBytes"/>, given its size in words: "1,234 bytes" where its length tells, "more than N bytes" where reading found out.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="mostBytes"/> is negative or past <see cref="Array.MaxLength"/>.</exception>
    public static ReadOnlyMemory<byte> All(Stream stream, long mostBytes, Func<string, Exception> tooLarge)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(mostBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(mostBytes, Array.MaxLength);
        var length = stream.CanSeek ? stream.Length - stream.Position : 0;
        if (length > mostBytes)
        {
            throw tooLarge(Invariant($"{length:N0} bytes"));
        }

        using var bounded = new MemoryStream((int)length);
        var chunk = new byte[ChunkBytes];
        int read;
        while ((read = stream.Read(chunk)) > 0)
        {
            if (bounded.Length + read > mostBytes)
            {
                throw tooLarge(Invariant($"more than {mostBytes:N0} bytes"));
            }

            bounded.Write(chunk, 0, read);
        }

        return bounded.GetBuffer().AsMemory(0, (int)bounded.Length);
    }
}
