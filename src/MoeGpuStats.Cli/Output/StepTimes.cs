using System.Globalization;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// The host's time per <see cref="ModelRoutingStats.RecordStep(ReadOnlySpan{int}, int, int, ReadOnlySpan{float}, ReadOnlySpan{float})"/>
/// call of a run, and the tokens of the timed steps: the model report's "Time per step", in the units
/// of a single layer's "Time per batch" (milliseconds, the seed's <see cref="LatencyStats"/>).
/// </summary>
internal sealed class StepTimes
{
    private readonly LatencyStats _latency = new();
    private long _tokens;

    /// <summary>What a step's time covers and leaves out, in a phrase.</summary>
    public required string Timed { get; init; }

    /// <summary>Steps timed.</summary>
    public ulong Count => _latency.TotalMeasurements;

    /// <summary>Adds one step's time and its tokens (per layer).</summary>
    public void Add(TimeSpan elapsed, int tokens)
    {
        _latency.RecordLatency(elapsed);
        _tokens += tokens;
    }

    /// <summary>The mean time of a step in milliseconds; 0 before the first.</summary>
    public double MeanMs => _latency.AverageLatency();

    /// <summary>The 95th percentile of the newest <see cref="PercentileSteps"/> steps' times, in milliseconds.</summary>
    public double P95Ms => _latency.P95Latency();

    /// <summary>The steps the percentile sees: the newest, at most <see cref="LatencyStats.WindowSize"/>.</summary>
    public ulong PercentileSteps => Math.Min(Count, LatencyStats.WindowSize);

    /// <summary>The timed steps' tokens over their time: tokens a second through every layer; 0 when no time was measured.</summary>
    public double TokensPerSecond => _latency.TotalLatencyMs > 0 ? _tokens / (_latency.TotalLatencyMs / 1000.0) : 0.0;

    /// <summary>The periodic line's part: the mean so far.</summary>
    public string Periodic() => string.Create(CultureInfo.InvariantCulture, $"{MeanMs:#,0.000} ms per step");
}
