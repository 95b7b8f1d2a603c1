using System.Globalization;

namespace MoeGpuStats.Cli;

/// <summary>A count and its noun as a person writes them: "1 expert", "1,024 experts", "2 batches".</summary>
internal static class Counted
{
    /// <summary><paramref name="count"/> with thousands separators and <paramref name="noun"/>, plural unless the count is 1.</summary>
    /// <param name="count">How many.</param>
    /// <param name="noun">The singular.</param>
    /// <param name="plural">The plural where it is not the singular and an s ("batches").</param>
    public static string Of(long count, string noun, string? plural = null) =>
        Join(count.ToString("N0", CultureInfo.InvariantCulture), count == 1, noun, plural);

    /// <inheritdoc cref="Of(long, string, string?)"/>
    public static string Of(ulong count, string noun, string? plural = null) => OfSum(count, noun, plural);

    /// <summary><see cref="Of(long, string, string?)"/> for a sum over layers, which may pass 2^64 − 1.</summary>
    /// <inheritdoc cref="Of(long, string, string?)"/>
    public static string OfSum(UInt128 count, string noun, string? plural = null) =>
        Join(count.ToString("N0", CultureInfo.InvariantCulture), count == 1, noun, plural);

    private static string Join(string count, bool one, string noun, string? plural) => $"{count} {(one ? noun : plural ?? noun + "s")}";
}
