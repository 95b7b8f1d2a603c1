namespace MoeGpuStats.Cli;

/// <summary>
/// The option or command a mistyped word most likely meant (<c>--layer</c> for <c>--layers</c>), for the
/// one-line parse error: System.CommandLine's own suggestions are a multi-line list written by its
/// error action, which <c>moegs</c> replaces with one line.
/// </summary>
internal static class TypoSuggestion
{
    /// <summary>The most edits a suggestion may be away from the word: two catch a dropped, doubled or swapped letter.</summary>
    private const int MaxEdits = 2;

    /// <summary>
    /// The name in <paramref name="names"/> closest to <paramref name="word"/> in edits (insertions,
    /// deletions, substitutions), or the one name that <paramref name="word"/> begins with or that begins
    /// with it; null when none is close or two are equally close.
    /// </summary>
    public static string? For(string word, IEnumerable<string> names)
    {
        var candidates = names.Distinct(StringComparer.Ordinal).ToList();
        var scored = candidates
            .Select(name => (Name: name, Edits: Edits(word, name)))
            .Where(c => c.Edits <= MaxEdits)
            .OrderBy(c => c.Edits)
            .ToList();
        if (scored.Count > 0)
        {
            return scored.Count == 1 || scored[1].Edits > scored[0].Edits ? scored[0].Name : null;
        }

        var prefixed = candidates.Where(name => word.Length >= 4 && (name.StartsWith(word, StringComparison.Ordinal) || word.StartsWith(name, StringComparison.Ordinal))).ToList();
        return prefixed.Count == 1 ? prefixed[0] : null;
    }

    /// <summary>Levenshtein distance: the fewest single-character insertions, deletions and substitutions from <paramref name="a"/> to <paramref name="b"/>.</summary>
    private static int Edits(string a, string b) => Quickenshtein.Levenshtein.GetDistance(a, b);
}
