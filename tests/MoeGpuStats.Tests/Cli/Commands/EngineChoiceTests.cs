using MoeGpuStats.Cli.Commands;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary>EngineChoice: what <c>moegs</c> says about the engine it counts on.</summary>
public sealed class EngineChoiceTests
{
    [Fact]
    public void TheManagedFallbackSaysWhy()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable)))
        {
            Assert.Skip($"{RoutingStats.AcceleratorVariable} is set: no fallback happens.");
        }

        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        Assert.Equal("no CUDA or OpenCL device found; using the managed engine", EngineChoice.Describe(stats));
    }
}
