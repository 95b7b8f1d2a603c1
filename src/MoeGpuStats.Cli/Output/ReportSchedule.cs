namespace MoeGpuStats.Cli.Output;

/// <summary>
/// When a run's next periodic report is due: <c>--report-interval</c> seconds after the last, or nine times the last
/// report's own time after it where that is longer, so that reports take at most a tenth of the run (a large model's
/// summary takes seconds on ILGPU's CPU accelerator, and an interval of a millisecond would report every step).
/// The first report is due an interval after the schedule is made.
/// </summary>
/// <param name="interval">Seconds between reports; 0 for none.</param>
/// <param name="clock">The clock the run is timed by; the system's unless a test gives its own.</param>
internal sealed class ReportSchedule(double interval, TimeProvider? clock = null)
{
    private readonly TimeProvider _clock = clock ?? TimeProvider.System;
    private long _last = (clock ?? TimeProvider.System).GetTimestamp();
    private TimeSpan _gap = TimeSpan.FromSeconds(interval);

    /// <summary>Whether a report is due.</summary>
    public bool Due => interval > 0 && _clock.GetElapsedTime(_last) >= _gap;

    /// <summary>Writes a report with <paramref name="report"/> and times it, which sets when the next is due.</summary>
    public void Report(Action report)
    {
        var began = _clock.GetTimestamp();
        report();
        _last = _clock.GetTimestamp();
        _gap = TimeSpan.FromSeconds(Math.Max(interval, 9 * _clock.GetElapsedTime(began, _last).TotalSeconds));
    }
}
