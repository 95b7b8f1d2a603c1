using System.Diagnostics;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// When a run's next periodic report is due: <c>--report-interval</c> seconds after the last, or nine times the last
/// report's own time after it where that is longer, so that reports take at most a tenth of the run (a large model's
/// summary takes seconds on ILGPU's CPU accelerator, and an interval of a millisecond would report every step).
/// </summary>
internal sealed class ReportSchedule
{
    private readonly double _interval;
    private readonly Func<long> _now;
    private long _last;
    private TimeSpan _gap;

    /// <summary>Starts the schedule now: the first report is due <paramref name="interval"/> seconds from now.</summary>
    /// <param name="interval">Seconds between reports; 0 for none.</param>
    /// <param name="clock">The time, as <see cref="Stopwatch.GetTimestamp"/> gives it; tests give their own.</param>
    public ReportSchedule(double interval, Func<long>? clock = null)
    {
        _interval = interval;
        _now = clock ?? Stopwatch.GetTimestamp;
        _last = _now();
        _gap = TimeSpan.FromSeconds(interval);
    }

    /// <summary>Whether a report is due.</summary>
    public bool Due => _interval > 0 && Stopwatch.GetElapsedTime(_last, _now()) >= _gap;

    /// <summary>Writes a report with <paramref name="report"/> and times it, which sets when the next is due.</summary>
    public void Report(Action report)
    {
        var began = _now();
        report();
        _last = _now();
        _gap = TimeSpan.FromSeconds(Math.Max(_interval, 9 * Stopwatch.GetElapsedTime(began, _last).TotalSeconds));
    }
}
