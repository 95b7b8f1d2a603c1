using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>Counts in the library's messages: "1 value", "3 values".</summary>
internal static class Plural
{
    /// <summary><paramref name="count"/> (formatted invariantly, as "1,024") and <paramref name="noun"/>, with an s unless the count is 1.</summary>
    public static string Of(long count, string noun) => Invariant($"{count:N0} {noun}{(count == 1 ? "" : "s")}");
}
