using System.Runtime.InteropServices;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Cli;

/// <summary>
/// Ctrl-C and SIGTERM over a whole run, by its stage. Before a run records anything, or before any command writes its
/// files, a signal ends the process at once: no output file has been written. While a run records, the first signal
/// stops it after the step at hand, and what it recorded is still reported and saved; a first signal while a command
/// reports and writes its files lets it finish. Either way the command then exits with
/// <see cref="ExitCodes.Interrupted"/> (<see cref="StoppedEarly"/>), so that a supervisor does not take a signalled
/// run for a complete one. A later signal ends the process at once, naming the output files it leaves unwritten.
/// Serving the final state (<c>--serve-after</c>), the first signal ends the serving, the expected end: exit 0. Each
/// request says on standard error what it does; a resent one adds nothing.
/// </summary>
/// <remarks>
/// A signal less than <see cref="Resent"/> after the one that asked the run to stop is that request again, not a
/// second one: <c>timeout(1)</c> signals the process and then its group, and a supervisor may signal both too, so
/// one request often comes twice within a millisecond; taken for a second Ctrl-C, it lost the whole run.
/// </remarks>
internal sealed class Interruption : IDisposable
{
    /// <summary>How long after a stop request a signal is that request sent again.</summary>
    public static readonly TimeSpan Resent = TimeSpan.FromSeconds(1);

    private readonly TextWriter _error;
    private readonly bool _onNewLine;
    private readonly TimeProvider _clock;
    private readonly PosixSignalRegistration[] _registrations;
    private readonly Lock _lock = new();
    private Stage _stage = Stage.Preparing;
    private long? _requestedAt;
    private Stage _requestedBefore;
    private OutputFiles? _files;

    /// <param name="error">Where a signal's line goes.</param>
    /// <param name="onNewLine">Whether to start that line on a new line: on a terminal it would follow the progress bar, or "^C".</param>
    /// <param name="handleSignals">Whether to register for SIGINT and SIGTERM; a test calls <see cref="Receive"/> instead.</param>
    /// <param name="clock">What <see cref="Resent"/> is measured by.</param>
    public Interruption(TextWriter error, bool onNewLine, bool handleSignals = true, TimeProvider? clock = null)
    {
        _error = error;
        _onNewLine = onNewLine;
        _clock = clock ?? TimeProvider.System;
        _registrations = handleSignals
            ? [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)]
            : [];
    }

    private enum Stage
    {
        Preparing,
        Recording,
        Finishing,
        Serving,
    }

    /// <summary>Whether a signal asked the run to stop before it served its final state: it then exits with <see cref="ExitCodes.Interrupted"/>.</summary>
    public bool StoppedEarly
    {
        get
        {
            lock (_lock)
            {
                return _requestedAt is not null && _requestedBefore != Stage.Serving;
            }
        }
    }

    /// <summary>Whether a signal asked the run to stop: a recording loop ends after the step at hand, a served endpoint stops.</summary>
    public bool Requested
    {
        get
        {
            lock (_lock)
            {
                return _requestedAt is not null;
            }
        }
    }

    /// <summary>The run starts recording: from now on a first signal stops it and its outputs are still written.</summary>
    public void Recording() => Enter(Stage.Recording);

    /// <summary>The run reports and writes <paramref name="files"/> (null until its files are known): a first signal lets it finish.</summary>
    public void Finishing(OutputFiles? files = null)
    {
        lock (_lock)
        {
            _stage = Stage.Finishing;
            _files = files ?? _files;
        }
    }

    /// <summary>The run serves its final state (<c>--serve-after</c>): a first signal ends the serving, and the command then exits.</summary>
    public void Serving() => Enter(Stage.Serving);

    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }
    }

    /// <summary>Takes one SIGINT or SIGTERM: writes what it does and returns whether the process ends at once (the signal's default action).</summary>
    internal bool Receive()
    {
        string line;
        bool endNow;
        lock (_lock)
        {
            var now = _clock.GetTimestamp();
            if (_requestedAt is { } first && _clock.GetElapsedTime(first, now) < Resent)
            {
                return false;
            }

            var second = _requestedAt is not null;
            endNow = second || _stage == Stage.Preparing;
            if (!second)
            {
                (_requestedAt, _requestedBefore) = (now, _stage);
            }

            line = (_stage, endNow) switch
            {
                (Stage.Preparing, _) => "moegs: stopped by Ctrl-C or SIGTERM: no output file was written.",
                (_, true) => $"moegs: ended at once by a second Ctrl-C or SIGTERM{Unwritten()}",
                (Stage.Recording, _) => $"moegs: stopping after the step at hand; what was recorded is still reported and saved (Ctrl-C or SIGTERM again, {Resent.TotalSeconds:0} s or more later, ends at once).",
                (Stage.Finishing, _) => $"moegs: finishing the report and output files (Ctrl-C or SIGTERM again, {Resent.TotalSeconds:0} s or more later, ends at once).",
                _ => "moegs: stopped serving the final state.",
            };
        }

        // After the progress bar's line a newline comes first, in the same call: written as it is, the line escaped.
        _error.Write((_onNewLine ? Environment.NewLine : "") + UnsafeText.Escaped(line) + Environment.NewLine);
        return endNow;
    }

    /// <summary>What an end at once leaves unwritten, to end its line.</summary>
    private string Unwritten()
    {
        if (_stage == Stage.Serving)
        {
            return ".";
        }

        var unwritten = _files?.Unwritten ?? [];
        return _files is null ? $": {(_stage == Stage.Recording ? "nothing reported or saved" : "no output file was written")} (a file an earlier run left under an output's name stays as it was)."
            : unwritten.Count == 0 ? "; every output file was written."
            : $": {string.Join(", ", unwritten.SkipLast(1))}{(unwritten.Count > 1 ? " and " : "")}{unwritten[^1]} not written (a file an earlier run left under such a name stays as it was).";
    }

    private void Enter(Stage stage)
    {
        lock (_lock)
        {
            _stage = stage;
        }
    }

    private void Handle(PosixSignalContext context) => context.Cancel = !Receive();
}
