using System.Diagnostics;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Progress of a long run on standard error: a redrawn bar on a terminal, a line per 10 % when
/// redirected. Silent for runs shorter than a second, and when disabled (<c>--json</c>).
/// Other lines written while it runs go through <see cref="WriteLine"/>, which never leaves them on the bar's line.
/// </summary>
/// <param name="unit">What the run counts, plural: <c>batches</c> of one layer, <c>steps</c> of a model.</param>
internal sealed class ProgressDisplay(CliConsole console, int total, bool enabled, string unit) : IDisposable
{
    private const int BarWidth = 30;
    private readonly long _started = Stopwatch.GetTimestamp();
    private int _lastDecile = -1;
    private string _bar = "";

    public void Report(int done)
    {
        if (!enabled || total == 0 || Stopwatch.GetElapsedTime(_started) < TimeSpan.FromSeconds(1))
        {
            return;
        }

        var fraction = (double)done / total;
        if (console.ErrorIsTerminal)
        {
            var filled = (int)(fraction * BarWidth);
            _bar = $"[{new string('#', filled)}{new string(' ', BarWidth - filled)}] {fraction * 100,3:0} % {done:N0}/{total:N0} {unit}";
            console.Error.Write($"\r{_bar}");
        }
        else if ((int)(fraction * 10) is var decile && decile > _lastDecile)
        {
            _lastDecile = decile;
            // Whole percents rounded down, as the deciles are: 29.5 % rounded up would print 30 % twice.
            console.Error.WriteLine($"progress: {Math.Floor(fraction * 100):0} % ({done:N0}/{total:N0} {unit})");
        }
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
