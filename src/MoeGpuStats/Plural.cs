namespace MoeGpuStats;

/// <summary>Counts in the library's messages: "1 value", "3 values".</summary>
internal static class Plural
{
    /// <summary><paramref name="count"/> and <paramref name="noun"/>, with an s unless the count is 1.</summary>
    public static string Of(long count, string noun) => $"{count:N0} {noun}{(count == 1 ? "" : "s")}";
}
