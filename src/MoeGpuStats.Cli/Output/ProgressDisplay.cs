using System.Diagnostics;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Progress of a long run on standard error: a redrawn bar on a terminal, a line per 10 % when
/// redirected. Silent for runs shorter than a second, and when disabled (<c>--json</c>, <c>--quiet</c>).
/// </summary>
internal sealed class ProgressDisplay(int total, bool enabled) : IDisposable
{
    private readonly long _started = Stopwatch.GetTimestamp();
    private readonly bool _terminal = !Console.IsErrorRedirected;
    private int _lastDecile = -1;
    private bool _drawn;

    public void Report(int done)
    {
        if (!enabled || total == 0 || Stopwatch.GetElapsedTime(_started) < TimeSpan.FromSeconds(1))
        {
            return;
        }

        var fraction = (double)done / total;
        if (_terminal)
        {
            var filled = (int)(fraction * 30);
            Console.Error.Write($"\r[{new string('#', filled)}{new string(' ', 30 - filled)}] {fraction,4:P0} {done}/{total} batches");
            _drawn = true;
        }
        else if ((int)(fraction * 10) is var decile && decile > _lastDecile)
        {
            _lastDecile = decile;
            Console.Error.WriteLine($"progress: {fraction:P0} ({done}/{total} batches)");
        }
    }

    public void Dispose()
    {
        if (_drawn)
        {
            Console.Error.WriteLine();
        }
    }
}
