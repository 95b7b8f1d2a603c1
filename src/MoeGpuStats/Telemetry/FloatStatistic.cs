using System.Globalization;

namespace MoeGpuStats.Telemetry;

/// <summary>The seed's f32 statistics as the instruments publish them: doubles.</summary>
internal static class FloatStatistic
{
    /// <summary>
    /// <paramref name="value"/> as the double its shortest decimal is. An exporter that widens the float prints its
    /// binary value's tail (5.625000476837158 for the float 5.6250005), a digit string no figure of the statistics has.
    /// </summary>
    public static double ToDouble(float value) =>
        double.Parse(value.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
}
