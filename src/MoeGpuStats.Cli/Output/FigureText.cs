using System.Globalization;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// A figure the reports print in fixed notation, in scientific notation where fixed would pass fifteen digits. No run
/// makes such a time, rate, loss or variance, but a snapshot may hold one: its latencies and losses are any finite
/// numbers, and a mean of 10^300 ms would print as a line of 400 characters.
/// </summary>
internal static class FigureText
{
    /// <summary>The magnitude from which a figure is printed in scientific notation.</summary>
    public const double ScientificFrom = 1e15;

    /// <summary><paramref name="value"/> in <paramref name="fixedFormat"/> (invariant culture), or as <c>1.5e+300</c> from <see cref="ScientificFrom"/> up.</summary>
    public static string Fixed(double value, string fixedFormat) =>
        value.ToString(Math.Abs(value) < ScientificFrom ? fixedFormat : "0.###e+0", CultureInfo.InvariantCulture);
}
