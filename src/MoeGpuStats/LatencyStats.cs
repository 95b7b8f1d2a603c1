using MoeGpuStats.Collections;

namespace MoeGpuStats;

/// <summary>
/// Routing latency: totals, extremes and the newest <see cref="WindowSize"/> measurements (the
/// seed's <c>LatencyStats</c>). Percentiles are read from a sorted copy of the window that catches
/// up on the first read after records (see <see cref="PercentileWindow"/>): a record costs O(1),
/// repeated queries O(1), and every query returns exactly the seed's value.
/// </summary>
public sealed class LatencyStats
{
    /// <summary>How many recent measurements the percentiles see, as in the seed.</summary>
    public const int WindowSize = 1000;

    private readonly PercentileWindow _window = new(WindowSize);

    /// <summary>Measurements recorded.</summary>
    public ulong TotalMeasurements { get; private set; }

    /// <summary>Sum of all measurements, in milliseconds.</summary>
    public double TotalLatencyMs { get; private set; }

    /// <summary>Smallest measurement in milliseconds; +infinity before the first (JSON: <c>null</c>).</summary>
    public double MinLatencyMs { get; private set; } = double.PositiveInfinity;

    /// <summary>Largest measurement in milliseconds; 0 before the first.</summary>
    public double MaxLatencyMs { get; private set; }

    /// <summary>The newest measurements in milliseconds, oldest first (at most <see cref="WindowSize"/>).</summary>
    public IReadOnlyList<double> RecentLatencies => _window.Recent;

    /// <summary>Records one routing latency.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="latency"/> is negative.</exception>
    public void RecordLatency(TimeSpan latency)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(latency, TimeSpan.Zero);
        Add(ToMilliseconds(latency));
    }

    /// <summary>Mean of all measurements in milliseconds; 0 before the first.</summary>
    public double AverageLatency() => TotalMeasurements > 0 ? TotalLatencyMs / TotalMeasurements : 0.0;

    /// <summary>
    /// The <paramref name="p"/>-th percentile of the recent window, as the seed computes it: the value
    /// at rank <c>floor(p / 100 * (n - 1))</c> in ascending order; 0 when the window is empty.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="p"/> is outside [0, 100] or NaN.</exception>
    public double Percentile(double p)
    {
        if (!(p >= 0.0 && p <= 100.0))
        {
            throw new ArgumentOutOfRangeException(nameof(p), p, "A percentile must lie in [0, 100].");
        }

        var count = _window.Count;
        if (count == 0)
        {
            return 0.0;
        }

        var rank = (int)(p / 100.0 * (count - 1));
        return _window.OrderStatistic(Math.Min(rank, count - 1));
    }

    /// <summary>The 95th percentile of the recent window.</summary>
    public double P95Latency() => Percentile(95.0);

    /// <summary>The 99th percentile of the recent window.</summary>
    public double P99Latency() => Percentile(99.0);

    internal void Reset()
    {
        TotalMeasurements = 0;
        TotalLatencyMs = 0.0;
        MinLatencyMs = double.PositiveInfinity;
        MaxLatencyMs = 0.0;
        _window.Clear();
    }

    /// <summary>Replaces the whole state (deserialization, snapshots); the caller has validated it.</summary>
    internal void Restore(ulong totalMeasurements, double totalLatencyMs, double minLatencyMs, double maxLatencyMs, IEnumerable<double> recent)
    {
        Reset();
        foreach (var value in recent)
        {
            _window.Add(value);
        }

        TotalMeasurements = totalMeasurements;
        TotalLatencyMs = totalLatencyMs;
        MinLatencyMs = minLatencyMs;
        MaxLatencyMs = maxLatencyMs;
    }

    internal void CopyTo(LatencyStats target) =>
        target.Restore(TotalMeasurements, TotalLatencyMs, MinLatencyMs, MaxLatencyMs, _window.Recent);

    /// <summary>
    /// Converts the way Rust's <c>Duration::as_secs_f64() * 1000.0</c> does (whole seconds plus
    /// nanoseconds / 1e9), so that totals match the seed bit for bit rather than to the last ulp.
    /// </summary>
    internal static double ToMilliseconds(TimeSpan latency)
    {
        var seconds = latency.Ticks / TimeSpan.TicksPerSecond;
        var nanos = latency.Ticks % TimeSpan.TicksPerSecond * 100;
        return (seconds + nanos / 1e9) * 1000.0;
    }

    private void Add(double latencyMs)
    {
        TotalMeasurements++;
        TotalLatencyMs += latencyMs;
        MinLatencyMs = Math.Min(MinLatencyMs, latencyMs);
        MaxLatencyMs = Math.Max(MaxLatencyMs, latencyMs);
        _window.Add(latencyMs);
    }
}
