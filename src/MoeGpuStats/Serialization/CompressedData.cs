namespace MoeGpuStats.Serialization;

/// <summary>
/// Names the compression of a file that starts with a compressor's magic bytes, for the refusal of a file read as
/// text or arrays: snapshots and traces are often kept compressed, and "not UTF-8" alone does not say what to do.
/// </summary>
internal static class CompressedData
{
    /// <summary>" (it is gzip-compressed: decompress it first)" where <paramref name="start"/> begins a gzip, zstd, xz or bzip2 stream; otherwise empty.</summary>
    /// <param name="start">The file's first bytes (6 suffice).</param>
    public static string Hint(ReadOnlySpan<byte> start)
    {
        var format = start.StartsWith((ReadOnlySpan<byte>)[0x1F, 0x8B]) ? "gzip"
            : start.StartsWith((ReadOnlySpan<byte>)[0x28, 0xB5, 0x2F, 0xFD]) ? "zstd"
            : start.StartsWith((ReadOnlySpan<byte>)[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) ? "xz"
            : start.StartsWith("BZh"u8) ? "bzip2"
            : null;
        return format is null ? "" : $" (it is {format}-compressed: decompress it first)";
    }
}
