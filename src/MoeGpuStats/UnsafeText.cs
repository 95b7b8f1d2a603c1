using System.Globalization;
using System.Text;

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

    /// <summary>
    /// <paramref name="text"/> with each unsafe character written as a JSON, C or C# string escapes it: <c>\n</c>,
    /// <c>\r</c>, <c>\t</c>, any other as <c>\uXXXX</c> (ESC as <c>\u001b</c>, a right-to-left override as
    /// <c>\u202e</c>), so that a message echoing a name stays on one line and shows it as written. Every message of
    /// the library, the command line and the C API escapes this one way.
    /// </summary>
    public static string Escaped(string text)
    {
        if (!text.Any(IsUnsafe))
        {
            return text;
        }

        var escaped = new StringBuilder(text.Length + 8);
        foreach (var c in text)
        {
            escaped.Append(c switch
            {
                '\n' => @"\n",
                '\r' => @"\r",
                '\t' => @"\t",
                _ when IsUnsafe(c) => string.Create(CultureInfo.InvariantCulture, $@"\u{(int)c:x4}"),
                _ => c.ToString(),
            });
        }

        return escaped.ToString();
    }
}
