using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>Counts in the library's messages: "1 value", "3 values", "94 batches".</summary>
internal static class Plural
{
    /// <summary>
    /// <paramref name="count"/> (formatted invariantly, as "1,024") and <paramref name="noun"/>, plural unless the count
    /// is 1: an s, or es after a hissing sound ("batches").
    /// </summary>
    public static string Of(long count, string noun) => Invariant($"{count:N0} {noun}{(count == 1 ? "" : Hisses(noun) ? "es" : "s")}");

    private static bool Hisses(string noun) =>
        noun.EndsWith("ch", StringComparison.Ordinal) || noun.EndsWith("sh", StringComparison.Ordinal) || noun.EndsWith('s') || noun.EndsWith('x');
}
