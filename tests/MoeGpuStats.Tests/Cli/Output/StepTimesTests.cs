namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>A model run's time per step: the steps timed and their tokens over their time.</summary>
public sealed class StepTimesTests
{
    /// <summary>Tokens a second are the timed steps' tokens over their summed time: 6 + 2 tokens in 10 + 30 ms, 200 a second.</summary>
    [Fact]
    public void TokensPerSecondAreTheTimedStepsTokensOverTheirTime()
    {
        var times = new MoeGpuStats.Cli.Output.StepTimes { Timed = "as this test timed it" };
        times.Add(TimeSpan.FromMilliseconds(10), tokens: 6);
        times.Add(TimeSpan.FromMilliseconds(30), tokens: 2);

        Assert.Equal(2UL, times.Latency.TotalMeasurements);
        Assert.Equal(200.0, times.TokensPerSecond!.Value, 9);
    }

    /// <summary>Before a step is timed there is no rate, not a rate of 0 tokens in 0 s.</summary>
    [Fact]
    public void NoStepTimedIsNoRate() =>
        Assert.Null(new MoeGpuStats.Cli.Output.StepTimes { Timed = "as this test timed it" }.TokensPerSecond);
}
