using System.CommandLine;
using MoeGpuStats.Cli.Commands;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary>The window a model's run takes: --window as given, else the default within a memory bound.</summary>
public sealed class ModelOptionsTests
{
    /// <summary>
    /// Without --window, the window is 1,000 steps where its ring fits in <see cref="ModelOptions.DefaultRingBytes"/>;
    /// else the steps to record, at most the longest window within it, with a note when that holds fewer steps than
    /// the run records (a small trace claiming 600 layers of 4,096 experts took a 9.2 GiB ring). --window given is kept.
    /// </summary>
    [Theory]
    [InlineData("", 58, 256, 5_000, 1_000, false)]
    // 66 x 4,065 experts: the longest window within the bound is the default's 1,000 steps, which the default keeps.
    [InlineData("", 66, 4_065, 5, 1_000, false)]
    [InlineData("", 600, 4_096, 50, 50, false)]
    [InlineData("", 600, 4_096, 500, 109, true)]
    [InlineData("", 1_024, 4_096, 500, 64, true)]
    [InlineData("--window 800", 600, 4_096, 500, 800, false)]
    public void AWindowNotGivenKeepsItsRingWithinTheDefaultBound(string arguments, int layers, int experts, int steps, int expected, bool noted)
    {
        var (model, parse) = Parsed(arguments);

        var window = model.WindowFor(parse, layers, experts, steps);

        Assert.Equal(expected, window.Steps);
        Assert.Equal(noted, window.Notes(steps).Count == 1);
        if (arguments.Length == 0)
        {
            Assert.True((long)window.Steps * layers * experts * sizeof(uint) <= ModelOptions.DefaultRingBytes);
        }

        if (noted)
        {
            Assert.Contains($"the window holds the newest {expected} of {steps} steps recorded", window.Notes(steps)[0], StringComparison.Ordinal);
            Assert.Contains($"Give --window, up to {ModelRoutingStatsOptions.LongestWindow(layers, experts)}, for a longer one.", window.Notes(steps)[0], StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// The note counts the steps recorded, not those the run was given: a run of 500 steps interrupted after 300 has
    /// its newest 109 in the window, and one interrupted after 100 has them all, with no note.
    /// </summary>
    [Fact]
    public void TheCutWindowsNoteCountsTheStepsRecorded()
    {
        var (model, parse) = Parsed("");

        var window = model.WindowFor(parse, 600, 4_096, 500);

        Assert.Equal(109, window.Steps);
        Assert.StartsWith("note: the window holds the newest 109 of 300 steps recorded: --window was not given", Assert.Single(window.Notes(300)), StringComparison.Ordinal);
        Assert.Empty(window.Notes(109));
        Assert.Empty(window.Notes(100));
    }

    /// <summary>
    /// The endpoint's series bound is inclusive: 17 layers of 3,673 experts ranked in full, with the recent series, make
    /// exactly 250,000 (11 + 12 x 17 + 4 x 17 x 3,673 + 4 + 17) and are served; the EP balance's 2 more are refused.
    /// A window's every step may be published as recent, and a model of fewer experts than the default top-K ranks them all.
    /// </summary>
    [Theory]
    [InlineData("--metrics-top-experts 3673 --metrics-recent-steps 1", 17, 3_673, null)]
    [InlineData("--metrics-top-experts 3673 --metrics-recent-steps 1 --ep-size 1", 17, 3_673, "--metrics-top-experts 3673: 17 layers make 249,764 series (4 per layer and position: a hot and a cold expert and their loads), 250,002 in all; an endpoint publishes at most 250,000: give at most 3,672.")]
    [InlineData("--window 10 --metrics-recent-steps 10", 2, 16, null)]
    [InlineData("--window 10 --metrics-recent-steps 11", 2, 16, "--metrics-recent-steps 11: the window holds 10 steps (--window 10); give 1 to 10.")]
    [InlineData("", 2, 2, null)]
    [InlineData("--metrics-top-experts 3", 2, 2, "--metrics-top-experts 3: a layer has 2 experts; give 0 to 2.")]
    public void TheSeriesBoundIsCheckedAtItsEdges(string arguments, int layers, int experts, string? expected)
    {
        var (model, parse) = Parsed(arguments);

        Assert.Equal(expected, model.SeriesProblem(parse, layers, experts));
    }

    /// <summary>Without --metrics-top-experts the metrics rank the library's default number of experts.</summary>
    [Fact]
    public void TheMetricsRankTheLibrarysDefaultTopExpertsWhenNoneIsGiven()
    {
        var (model, parse) = Parsed("");

        Assert.Equal(new ModelMetrics(ModelRoutingStatsMetrics.DefaultTopExperts, false, null), model.Metrics(parse));
    }

    /// <summary>Each option's bounds: --ep-size from 1 to the most experts, --metrics-top-experts from 0 to the most experts.</summary>
    [Theory]
    [InlineData("--ep-size 4096", null)]
    [InlineData("--ep-size 0", "--ep-size 0: give expert-parallel ranks (a divisor of the experts), a whole number from 1 to 4,096.")]
    [InlineData("--metrics-top-experts 4096", null)]
    [InlineData("--metrics-top-experts 4097", "--metrics-top-experts 4097: give the experts per layer to rank, a whole number from 0 to 4,096.")]
    public void AnOptionIsTakenWithinItsBoundsAndRefusedPastThem(string arguments, string? expected)
    {
        var (_, parse) = Parsed(arguments);

        Assert.Equal(expected, parse.Errors.SingleOrDefault()?.Message);
    }

    private static (ModelOptions Model, ParseResult Parse) Parsed(string arguments)
    {
        var model = new ModelOptions("With --layers");
        var command = new RootCommand();
        model.AddTo(command);
        return (model, command.Parse(arguments));
    }
}
