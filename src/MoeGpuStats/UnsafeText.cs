namespace MoeGpuStats;

/// <summary>
/// The characters a message escapes where it echoes a caller's or a file's text: controls (a line break splits the
/// message; ESC and CSI, U+009B, drive a terminal), the line and paragraph separators some terminals break lines at,
/// and the bidirectional embeddings, overrides and isolates, which reorder what a terminal shows after them.
/// </summary>
internal static class UnsafeText
{
    /// <summary>Whether <paramref name="c"/> is shown escaped.</summary>
    public static bool IsUnsafe(char c) => char.IsControl(c) || c is '\u2028' or '\u2029' or (>= '\u202A' and <= '\u202E') or (>= '\u2066' and <= '\u2069');
}
