using MathNet.Numerics.Distributions;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// The seed's load variance trend (the least-squares slope of each batch's variance of tokens per
/// expert over the newest batches), fitted in double precision (the seed's f32 sums lose the slope of a
/// large variance: 10^9 rising 30 a batch reads as -32), with what a reader needs to weigh it: the variance it changes
/// and whether the slope stands out of the batches' scatter about the line. A variance of ~10^4
/// drifting by ±3 a batch is noise; the slope alone cannot say so.
/// </summary>
/// <param name="Batches">The batches the line is fitted to: the newest, at most the window.</param>
/// <param name="Slope">The fitted change of the variance per batch, in (tokens per expert)².</param>
/// <param name="MeanVariance">The mean variance over those batches.</param>
/// <param name="StandardError">The slope's standard error (ordinary least squares); infinite below 3 batches.</param>
internal readonly record struct VarianceTrend(int Batches, double Slope, double MeanVariance, double StandardError)
{
    /// <summary>The fit to the newest <paramref name="window"/> values of <paramref name="history"/>, in double precision.</summary>
    public static VarianceTrend Of(IReadOnlyList<float> history, int window)
    {
        var n = Math.Min(window, history.Count);
        var first = history.Count - n;
        if (n < 2)
        {
            return new VarianceTrend(n, 0, n == 1 ? history[first] : 0, double.PositiveInfinity);
        }

        var meanX = (n - 1) / 2.0;
        var meanY = 0.0;
        for (var i = 0; i < n; i++)
        {
            meanY += history[first + i];
        }

        meanY /= n;
        double sxx = 0, sxy = 0;
        for (var i = 0; i < n; i++)
        {
            sxx += (i - meanX) * (i - meanX);
            sxy += (i - meanX) * (history[first + i] - meanY);
        }

        var slope = sxy / sxx;
        if (n < 3)
        {
            return new VarianceTrend(n, slope, meanY, double.PositiveInfinity);
        }

        var residuals = 0.0;
        for (var i = 0; i < n; i++)
        {
            var residual = history[first + i] - meanY - (slope * (i - meanX));
            residuals += residual * residual;
        }

        return new VarianceTrend(n, slope, meanY, Math.Sqrt(residuals / (n - 2) / sxx));
    }

    /// <summary>The confidence at which a slope counts as a trend: that of three standard errors of a normal, 99.73 %.</summary>
    public static readonly double Confidence = 2 * Normal.CDF(0, 1, 3) - 1;

    /// <summary>
    /// Whether 0 lies outside the slope's two-sided <see cref="Confidence"/> interval, by Student's t with
    /// n − 2 degrees of freedom (the slope over its standard error follows it): for independent batches of
    /// roughly normal scatter, a level variance reads as a trend about once in 370 reports at any count of
    /// batches (three standard errors alone: one in 5 at 3 batches). Serving traffic drifts between
    /// batches, which makes the standard error an underestimate.
    /// </summary>
    public bool IsClear => Batches >= 3 && Math.Abs(Slope) > StudentT.InvCDF(0, 1, Batches - 2, (1 + Confidence) / 2) * StandardError;

    /// <summary>The line's change from the first batch to the last, as a fraction of the mean variance; 0 where that is 0.</summary>
    public double RelativeChange => MeanVariance > 0 ? Slope * (Batches - 1) / MeanVariance : 0;
}
