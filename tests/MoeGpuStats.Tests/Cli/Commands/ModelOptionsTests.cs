using System.CommandLine;
using MoeGpuStats.Cli.Commands;

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
    [InlineData("", 600, 4_096, 50, 50, false)]
    [InlineData("", 600, 4_096, 500, 109, true)]
    [InlineData("", 1_024, 4_096, 500, 64, true)]
    [InlineData("--window 800", 600, 4_096, 500, 800, false)]
    public void AWindowNotGivenKeepsItsRingWithinTheDefaultBound(string arguments, int layers, int experts, int steps, int expected, bool noted)
    {
        var model = new ModelOptions("With --layers");
        var command = new RootCommand();
        model.AddTo(command);

        var window = model.WindowFor(command.Parse(arguments), layers, experts, steps);

        Assert.Equal(expected, window.Steps);
        Assert.Equal(noted, window.Notes.Count == 1);
        if (arguments.Length == 0)
        {
            Assert.True((long)window.Steps * layers * experts * sizeof(uint) <= ModelOptions.DefaultRingBytes);
        }

        if (noted)
        {
            Assert.Contains($"the window holds the newest {expected} of {steps} steps", window.Notes[0], StringComparison.Ordinal);
            Assert.Contains($"Give --window, up to {ModelRoutingStatsOptions.LongestWindow(layers, experts)}, for a longer one.", window.Notes[0], StringComparison.Ordinal);
        }
    }
}
