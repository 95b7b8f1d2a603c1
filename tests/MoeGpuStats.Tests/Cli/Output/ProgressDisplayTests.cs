using System.Text;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

public sealed class ProgressDisplayTests
{
    [Fact]
    public void ALineWrittenDuringTheBarIsAloneOnItsTerminalLine()
    {
        using var error = new StringWriter();
        using (var progress = new ProgressDisplay(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: true), total: 10, enabled: true, unit: "batches"))
        {
            // The bar stays silent for the first second of a run.
            Thread.Sleep(TimeSpan.FromSeconds(1.1));
            progress.Report(4);
            progress.WriteLine("after 4 of 10 batches: a periodic report");
            progress.Report(5);
        }

        var screen = Terminal(error.ToString());
        Assert.Contains("after 4 of 10 batches: a periodic report", screen);
        Assert.Contains(screen, line => line.StartsWith('[') && line.Contains("5/10 batches", StringComparison.Ordinal));
        Assert.DoesNotContain(screen, line => line.StartsWith('[') && line.Contains("after", StringComparison.Ordinal));
    }

    /// <summary>Redirected, a line per 10 %, counting what the run counts (a model's steps, not batches).</summary>
    [Fact]
    public void ARedirectedRunReportsEachTenthInItsUnit()
    {
        using var error = new StringWriter();
        using (var progress = new ProgressDisplay(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false), total: 20, enabled: true, unit: "steps"))
        {
            Thread.Sleep(TimeSpan.FromSeconds(1.1));
            for (var done = 1; done <= 20; done++)
            {
                progress.Report(done);
            }
        }

        var lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(11, lines.Length);
        Assert.Equal("progress: 5 % (1/20 steps)", lines[0].TrimEnd());
        Assert.Equal("progress: 100 % (20/20 steps)", lines[^1].TrimEnd());
        Assert.All(lines, line => Assert.EndsWith("steps)", line.TrimEnd(), StringComparison.Ordinal));
    }

    /// <summary>Redirected, a run that passes its first second between two tenths prints each percent once: 118 of 400 is 29 %, not a second 30 %.</summary>
    [Fact]
    public void ARedirectedRunNeverPrintsOnePercentTwice()
    {
        using var error = new StringWriter();
        using (var progress = new ProgressDisplay(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false), total: 400, enabled: true, unit: "batches"))
        {
            Thread.Sleep(TimeSpan.FromSeconds(1.1));
            for (var done = 118; done <= 120; done++)
            {
                progress.Report(done);
            }
        }

        var lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line.TrimEnd()).ToArray();
        Assert.Equal(["progress: 29 % (118/400 batches)", "progress: 30 % (120/400 batches)"], lines);
    }

    /// <summary>What a terminal shows for <paramref name="written"/>: a carriage return goes back to the line's start and later text overwrites.</summary>
    private static List<string> Terminal(string written)
    {
        var lines = new List<string>();
        foreach (var raw in written.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n'))
        {
            var line = new StringBuilder();
            var column = 0;
            foreach (var c in raw)
            {
                if (c == '\r')
                {
                    column = 0;
                    continue;
                }

                if (column < line.Length)
                {
                    line[column] = c;
                }
                else
                {
                    line.Append(c);
                }

                column++;
            }

            lines.Add(line.ToString().TrimEnd());
        }

        return lines;
    }
}
