using System.Text;
using Microsoft.Extensions.Time.Testing;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

public sealed class ProgressDisplayTests
{
    [Fact]
    public void ALineWrittenDuringTheBarIsAloneOnItsTerminalLine()
    {
        using var error = new StringWriter();
        var clock = new FakeTimeProvider();
        using (var progress = new ProgressDisplay(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: true), total: 10, enabled: true, unit: "batches", clock))
        {
            // The bar stays silent for the first second of a run.
            progress.Report(3);
            Assert.Empty(error.ToString());
            clock.Advance(TimeSpan.FromSeconds(1.1));
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
        var clock = new FakeTimeProvider();
        using (var progress = new ProgressDisplay(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false), total: 20, enabled: true, unit: "steps", clock))
        {
            for (var done = 1; done <= 20; done++)
            {
                clock.Advance(TimeSpan.FromSeconds(2));
                progress.Report(done);
            }
        }

        var lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line.TrimEnd()).ToArray();
        Assert.Equal(11, lines.Length);
        Assert.Equal("progress: 5 % (1/20 steps, about 38 seconds left)", lines[0]);
        Assert.Equal("progress: 10 % (2/20 steps, about 36 seconds left)", lines[1]);
        Assert.Equal("progress: 100 % (20/20 steps)", lines[^1]);
        Assert.All(lines, line => Assert.Contains(" steps", line, StringComparison.Ordinal));
    }

    /// <summary>Redirected, a run that passes its first second between two tenths prints each percent once: 118 of 400 is 29 %, not a second 30 %.</summary>
    [Fact]
    public void ARedirectedRunNeverPrintsOnePercentTwice()
    {
        using var error = new StringWriter();
        var clock = new FakeTimeProvider();
        using (var progress = new ProgressDisplay(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false), total: 400, enabled: true, unit: "batches", clock))
        {
            clock.Advance(TimeSpan.FromSeconds(1.18));
            for (var done = 118; done <= 120; done++)
            {
                progress.Report(done);
            }
        }

        var lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line.TrimEnd()).ToArray();
        Assert.Equal(["progress: 29 % (118/400 batches, about 3 seconds left)", "progress: 30 % (120/400 batches, about 3 seconds left)"], lines);
    }

    /// <summary>
    /// A run of slow steps tells its length at the first step, in hours and minutes, and the bar's estimate
    /// shrinks without leaving the end of a longer one on the terminal's line.
    /// </summary>
    [Fact]
    public void TheTimeLeftIsTheRestAtThePaceSoFar()
    {
        using var error = new StringWriter();
        var clock = new FakeTimeProvider();
        using (var progress = new ProgressDisplay(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: true), total: 100, enabled: true, unit: "steps", clock))
        {
            clock.Advance(TimeSpan.FromSeconds(40));
            progress.Report(1);
            Assert.EndsWith("1/100 steps, about 1 hour, 6 minutes left", Terminal(error.ToString())[^1], StringComparison.Ordinal);

            clock.Advance(TimeSpan.FromSeconds(40 * 98));
            progress.Report(99);
            Assert.EndsWith("99/100 steps, about 40 seconds left", Terminal(error.ToString())[^1], StringComparison.Ordinal);

            progress.Report(100);
            Assert.EndsWith("100/100 steps", Terminal(error.ToString())[^1], StringComparison.Ordinal);
        }
    }

    /// <summary>Two units, the smaller rounded: an hour and a half minute is "1 hour, 1 minute", never "1 hour, 30 seconds".</summary>
    [Theory]
    [InlineData(3_630, "about 1 hour, 1 minute left")]
    [InlineData(3_629, "about 1 hour left")]
    [InlineData(86_405, "about 1 day left")]
    [InlineData(90_000, "about 1 day, 1 hour left")]
    [InlineData(59.6, "about 1 minute left")]
    [InlineData(75, "about 1 minute, 15 seconds left")]
    [InlineData(1e10, "about 521 weeks, 3 days left")]
    public void TheTimeLeftIsInItsTwoLargestUnits(double secondsLeft, string expected)
    {
        using var error = new StringWriter();
        var clock = new FakeTimeProvider();
        using var progress = new ProgressDisplay(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false), total: 2, enabled: true, unit: "steps", clock);

        // One step of two done in secondsLeft: the other takes as long.
        clock.Advance(TimeSpan.FromSeconds(secondsLeft));
        progress.Report(1);

        Assert.Equal($"progress: 50 % (1/2 steps, {expected})", error.ToString().Trim());
    }

    [Fact]
    public void UnderASecondLeftSaysSo()
    {
        using var error = new StringWriter();
        var clock = new FakeTimeProvider();
        using var progress = new ProgressDisplay(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false), total: 10, enabled: true, unit: "steps", clock);

        clock.Advance(TimeSpan.FromSeconds(1.1));
        progress.Report(9);

        Assert.Equal("progress: 90 % (9/10 steps, less than a second left)", error.ToString().Trim());
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
