using System.Globalization;
using Humanizer;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Progress of a long run on standard error: a redrawn bar on a terminal; when redirected, a line at the first
/// second, then one per further 10 %; each with the time left at the pace so far (so a run of 40-second steps says how long
/// it will take at its first step). Silent for runs shorter than a second, and when disabled (<c>--json</c>).
/// Other lines written while it runs go through <see cref="WriteLine"/>, which never leaves them on the bar's line.
/// </summary>
/// <param name="console">Standard error, where the progress goes, and whether it is a terminal.</param>
/// <param name="total">The batches or steps the run records.</param>
/// <param name="enabled">Whether to show progress at all (not with <c>--json</c>).</param>
/// <param name="unit">What the run counts, plural: <c>batches</c> of one layer, <c>steps</c> of a model.</param>
/// <param name="clock">The clock the run is timed by; the system's unless a test gives its own.</param>
internal sealed class ProgressDisplay(CliConsole console, int total, bool enabled, string unit, TimeProvider? clock = null) : IDisposable
{
    private const int BarWidth = 30;

    /// <summary>The longest time left told: longer says only that the run will not end.</summary>
    private static readonly TimeSpan MostLeft = TimeSpan.FromDays(3_650);

    private readonly TimeProvider _clock = clock ?? TimeProvider.System;
    private readonly long _started = (clock ?? TimeProvider.System).GetTimestamp();
    private int _lastDecile = -1;
    private string _bar = "";

    public void Report(int done)
    {
        var elapsed = _clock.GetElapsedTime(_started);
        if (!enabled || total == 0 || elapsed < TimeSpan.FromSeconds(1))
        {
            return;
        }

        var fraction = (double)done / total;
        var left = TimeLeft(elapsed, done);
        if (console.ErrorIsTerminal)
        {
            var filled = (int)(fraction * BarWidth);
            var bar = $"[{new string('#', filled)}{new string(' ', BarWidth - filled)}] {fraction * 100,3:0} % {done:N0}/{total:N0} {unit}{left}";
            // A shorter estimate than the last must not leave the end of the last one on the line.
            console.Error.Write($"\r{bar.PadRight(_bar.Length)}");
            _bar = bar;
        }
        else if ((int)(fraction * 10) is var decile && decile > _lastDecile)
        {
            _lastDecile = decile;
            // Whole percents rounded down, as the deciles are: 29.5 % rounded up would print 30 % twice.
            console.Error.WriteLine($"progress: {Math.Floor(fraction * 100):0} % ({done:N0}/{total:N0} {unit}{left})");
        }
    }

    /// <summary>
    /// <c>, about 9 minutes, 12 seconds left</c> at the pace so far, in its two largest units, the smaller rounded (a
    /// run of hours says minutes, not seconds); empty before the first unit and after the last.
    /// </summary>
    private string TimeLeft(TimeSpan elapsed, int done)
    {
        if (done <= 0 || done >= total)
        {
            return "";
        }

        // Seconds in a double: a slow run of 2^31 steps would pass TimeSpan's range.
        var seconds = Math.Min(elapsed.TotalSeconds * ((double)(total - done) / done), MostLeft.TotalSeconds);
        if (seconds < 0.5)
        {
            return ", less than a second left";
        }

        var (unit, length) = seconds switch
        {
            >= 86_400 => (TimeUnit.Hour, TimeSpan.FromHours(1)),
            >= 3_600 => (TimeUnit.Minute, TimeSpan.FromMinutes(1)),
            _ => (TimeUnit.Second, TimeSpan.FromSeconds(1)),
        };
        var left = length * Math.Round(seconds / length.TotalSeconds, MidpointRounding.AwayFromZero);
        return $", about {left.Humanize(precision: 2, culture: CultureInfo.InvariantCulture, minUnit: unit)} left";
    }

    /// <summary>Writes a line on standard error: on a terminal the bar is wiped first and drawn again below it.</summary>
    public void WriteLine(string line)
    {
        if (_bar.Length > 0)
        {
            console.Error.Write($"\r{new string(' ', _bar.Length)}\r");
        }

        console.Error.WriteLine(line);
        if (_bar.Length > 0)
        {
            console.Error.Write(_bar);
        }
    }

    public void Dispose()
    {
        if (_bar.Length > 0)
        {
            console.Error.WriteLine();
        }
    }
}
