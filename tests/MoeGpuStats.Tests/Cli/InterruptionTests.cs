using Microsoft.Extensions.Time.Testing;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli;

/// <summary>What each Ctrl-C or SIGTERM does at each stage of a run, and what it says (signals given through <c>Receive</c>).</summary>
public sealed class InterruptionTests
{
    private readonly StringWriter _error = new();
    private readonly FakeTimeProvider _clock = new();

    [Fact]
    public void BeforeTheRunRecordsASignalEndsItAtOnceWritingNothing()
    {
        using var interruption = Create();

        Assert.True(interruption.Receive());
        Assert.Equal(["moegs: stopped by Ctrl-C or SIGTERM: no output file was written."], Lines());
    }

    /// <summary>
    /// The first signal stops a recording run, which still reports and saves; the same signal sent again within a
    /// second (timeout(1) signals the process and then its group) is that request; a later one ends the run at once.
    /// </summary>
    [Fact]
    public void ASignalResentWithinASecondIsTheFirstAndALaterOneEndsTheRun()
    {
        using var interruption = Create();
        interruption.Recording();

        Assert.False(interruption.StoppedEarly);
        Assert.False(interruption.Receive());
        Assert.True(interruption.Requested);
        Assert.True(interruption.StoppedEarly);
        _clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.False(interruption.Receive());
        _clock.Advance(TimeSpan.FromMilliseconds(998));
        Assert.False(interruption.Receive());
        Assert.Equal(["moegs: stopping after the step at hand; what was recorded is still reported and saved (Ctrl-C or SIGTERM again, 1 s or more later, ends at once)."], Lines());

        _clock.Advance(TimeSpan.FromMilliseconds(1));
        Assert.True(interruption.Receive());
        Assert.Equal("moegs: ended at once by a second Ctrl-C or SIGTERM: nothing reported or saved (a file an earlier run left under an output's name stays as it was).", Lines()[^1]);
    }

    /// <summary>An end at once while the files are written names those not yet written; a first signal then lets the run finish.</summary>
    [Fact]
    public void AnEndWhileWritingNamesTheFilesLeftUnwritten()
    {
        using var interruption = Create();
        var console = new CliConsole(TextWriter.Null, _error, ErrorIsTerminal: false) { Interrupt = interruption };
        var folder = Directory.CreateTempSubdirectory("moegs-interrupt-");
        try
        {
            var snapshot = new FileInfo(Path.Combine(folder.FullName, "run.json"));
            var plot = new FileInfo(Path.Combine(folder.FullName, "load.png"));
            var load = new FileInfo(Path.Combine(folder.FullName, "load.npy"));
            var endedAtOnce = new List<bool>();
            var files = new OutputFiles(console);
            files.Add("--window-load", load, "window load", full => File.WriteAllText(full, "x"))
                .Add("--save", snapshot, "snapshot", _ =>
                {
                    endedAtOnce.Add(interruption.Receive());
                    _clock.Advance(TimeSpan.FromSeconds(2));
                    endedAtOnce.Add(interruption.Receive());
                })
                .Add("--plot", plot, "plot", _ => { });

            files.WriteAll();

            Assert.Equal([false, true], endedAtOnce);
            Assert.Contains("moegs: finishing the report and output files (Ctrl-C or SIGTERM again, 1 s or more later, ends at once).", Lines());
            Assert.Contains($"moegs: ended at once by a second Ctrl-C or SIGTERM: --save {snapshot} and --plot {plot} not written (a file an earlier run left under such a name stays as it was).", Lines());
            Assert.Equal([], files.Unwritten);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>Serving the final state, the first signal ends the serving, the expected end: the run is complete and not stopped early.</summary>
    [Fact]
    public void ServingAFirstSignalEndsTheServing()
    {
        using var interruption = Create();
        interruption.Serving();

        Assert.False(interruption.Receive());
        Assert.True(interruption.Requested);
        Assert.False(interruption.StoppedEarly);
        Assert.Equal(["moegs: stopped serving the final state."], Lines());
    }

    /// <summary>On a terminal the line starts a line of its own: the progress bar, or the terminal's "^C", is on the one at hand.</summary>
    [Fact]
    public void OnATerminalTheLineStartsOnANewLine()
    {
        using var interruption = new Interruption(_error, onNewLine: true, handleSignals: false, _clock);

        interruption.Receive();

        Assert.StartsWith(Environment.NewLine + "moegs: stopped by Ctrl-C", _error.ToString(), StringComparison.Ordinal);
    }

    private Interruption Create() => new(_error, onNewLine: false, handleSignals: false, _clock);

    private string[] Lines() => _error.ToString().Split(Environment.NewLine, StringSplitOptions.RemoveEmptyEntries);
}
