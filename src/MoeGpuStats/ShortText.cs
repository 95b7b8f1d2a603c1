namespace MoeGpuStats;

/// <summary>A caller's or a file's text cut short where a one-line message echoes it.</summary>
internal static class ShortText
{
    /// <summary>
    /// <paramref name="text"/>, or its first <paramref name="most"/> characters and "..." where longer; one fewer where
    /// the cut would part a surrogate pair, whose lone half is no character (UTF-8 cannot encode it, and JSON's encoder
    /// throws on it).
    /// </summary>
    /// <param name="text">The text.</param>
    /// <param name="most">The most characters shown, 2 or more.</param>
    public static string Of(string text, int most) =>
        text.Length <= most ? text : text[..(char.IsHighSurrogate(text[most - 1]) ? most - 1 : most)] + "...";
}
