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

    /// <summary>A whole model's best engine leaves OpenCL out: its fallback names CUDA alone, and how to take OpenCL.</summary>
    [Fact]
    public void AModelsManagedFallbackSaysOpenClMustBeNamed()
    {
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable)))
        {
            Assert.Skip($"{RoutingStats.AcceleratorVariable} is set: no fallback happens.");
        }

        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
        Assert.Equal(
            "no CUDA device found; using the managed engine (a whole model runs on OpenCL only when MOEGS_ACCELERATOR=opencl names it)",
            EngineChoice.Describe(model));
    }
}
