using MoeGpuStats.Collections;
using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>
/// Routing latency: totals, extremes and the newest <see cref="WindowSize"/> measurements (the
/// seed's <c>LatencyStats</c>). Percentiles are read from a sorted copy of the window that catches
/// up on the first read after records: a record costs O(1),
/// repeated queries O(1), and every query returns exactly the seed's value.
/// </summary>
/// <remarks>
/// Thread-safe: records, reads and resets may run on any threads at once. Each member is atomic
/// (a record is seen by a read in whole or not at all), so concurrent records lose nothing: the
/// count, total, extremes and window are exactly those of the records in some order.
/// </remarks>
public sealed class LatencyStats
{
    /// <summary>How many recent measurements the percentiles see, as in the seed.</summary>
    public const int WindowSize = 1000;

    // One lock for every field: a record updates five of them together, and even a percentile
    // read writes (the sorted copy's catch-up).
    private readonly Lock _lock = new();
    private readonly PercentileWindow _window = new(WindowSize);
    private ulong _totalMeasurements;
    private double _totalLatencyMs;
    private double _minLatencyMs = double.PositiveInfinity;
    private double _maxLatencyMs;

    /// <summary>Measurements recorded.</summary>
    public ulong TotalMeasurements
    {
        get
        {
            lock (_lock)
            {
                return _totalMeasurements;
            }
        }
    }

    /// <summary>Sum of all measurements, in milliseconds.</summary>
    public double TotalLatencyMs
    {
        get
        {
            lock (_lock)
            {
                return _totalLatencyMs;
            }
        }
    }

    /// <summary>Smallest measurement in milliseconds; +infinity before the first (JSON: <c>null</c>).</summary>
    public double MinLatencyMs
    {
        get
        {
            lock (_lock)
            {
                return _minLatencyMs;
            }
        }
    }

    /// <summary>Largest measurement in milliseconds; 0 before the first.</summary>
    public double MaxLatencyMs
    {
        get
        {
            lock (_lock)
            {
                return _maxLatencyMs;
            }
        }
    }

    /// <summary>
    /// The newest measurements in milliseconds, oldest first (at most <see cref="WindowSize"/>): a copy
    /// taken when read, which later records do not change.
    /// </summary>
    public IReadOnlyList<double> RecentLatencies
    {
        get
        {
            lock (_lock)
            {
                return _window.Recent.ToArray();
            }
        }
    }

    /// <summary>Records one routing latency.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="latency"/> is negative.</exception>
    /// <exception cref="InvalidOperationException">The measurements are at 2^63 − 1, the most a snapshot holds (statistics read from a file near it); nothing changed.</exception>
    public void RecordLatency(TimeSpan latency)
    {
        OutOfRange.ThrowIfNegative(latency);
        var latencyMs = ToMilliseconds(latency);
        lock (_lock)
        {
            if (_totalMeasurements == Kernels.RoutingStateLayout.MaxCount)
            {
                throw new InvalidOperationException(
                    Invariant($"This latency would take total_measurements past {Kernels.RoutingStateLayout.MaxCount:N0}, the most a snapshot holds; the statistics are unchanged: record into new statistics."));
            }

            _totalMeasurements++;
            _totalLatencyMs += latencyMs;
            _minLatencyMs = Math.Min(_minLatencyMs, latencyMs);
            _maxLatencyMs = Math.Max(_maxLatencyMs, latencyMs);
            _window.Add(latencyMs);
        }
    }

    /// <summary>Mean of all measurements in milliseconds; 0 before the first.</summary>
    public double AverageLatency()
    {
        lock (_lock)
        {
            return _totalMeasurements > 0 ? _totalLatencyMs / _totalMeasurements : 0.0;
        }
    }

    /// <summary>
    /// The <paramref name="p"/>-th percentile of the recent window in milliseconds, as the seed computes
    /// it: the value at rank <c>floor(p / 100 * (n - 1))</c> in ascending order; 0 when the window is empty.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="p"/> is outside [0, 100] or NaN.</exception>
    public double Percentile(double p)
    {
        if (!(p >= 0.0 && p <= 100.0))
        {
            throw OutOfRange.Error(nameof(p), p, "a percentile lies in [0, 100].");
        }

        lock (_lock)
        {
            var count = _window.Count;
            if (count == 0)
            {
                return 0.0;
            }

            var rank = (int)(p / 100.0 * (count - 1));
            return _window.OrderStatistic(Math.Min(rank, count - 1));
        }
    }

    /// <summary>The 95th percentile of the recent window, in milliseconds.</summary>
    public double P95Latency() => Percentile(95.0);

    /// <summary>The 99th percentile of the recent window, in milliseconds.</summary>
    public double P99Latency() => Percentile(99.0);

    internal void Reset()
    {
        lock (_lock)
        {
            ResetUnlocked();
        }
    }

    /// <summary>Replaces the whole state (deserialization, snapshots); the caller has validated it.</summary>
    internal void Restore(ulong totalMeasurements, double totalLatencyMs, double minLatencyMs, double maxLatencyMs, IEnumerable<double> recent)
    {
        // Enumerated before taking the lock: a source that is another LatencyStats locks its own.
        var values = recent.ToArray();
        lock (_lock)
        {
            ResetUnlocked();
            foreach (var value in values)
            {
                _window.Add(value);
            }

            _totalMeasurements = totalMeasurements;
            _totalLatencyMs = totalLatencyMs;
            _minLatencyMs = minLatencyMs;
            _maxLatencyMs = maxLatencyMs;
        }
    }

    /// <summary>One consistent state of this instance, which latencies recorded meanwhile on other threads do not change.</summary>
    internal LatencyStats Copy()
    {
        var copy = new LatencyStats();
        CopyTo(copy);
        return copy;
    }

    /// <summary>Copies one consistent state of this instance into <paramref name="target"/>.</summary>
    internal void CopyTo(LatencyStats target)
    {
        ulong count;
        double total, min, max;
        double[] recent;
        lock (_lock)
        {
            (count, total, min, max) = (_totalMeasurements, _totalLatencyMs, _minLatencyMs, _maxLatencyMs);
            recent = [.. _window.Recent];
        }

        target.Restore(count, total, min, max, recent);
    }

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

    private void ResetUnlocked()
    {
        _totalMeasurements = 0;
        _totalLatencyMs = 0.0;
        _minLatencyMs = double.PositiveInfinity;
        _maxLatencyMs = 0.0;
        _window.Clear();
    }
}
