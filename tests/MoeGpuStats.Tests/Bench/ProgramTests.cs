namespace MoeGpuStats.Tests.Bench;

/// <summary>The bench's entry point, run as the device scripts run it (<c>dotnet MoeGpuStats.Bench.dll --mode ...</c>): its exit codes and output.</summary>
public sealed class ProgramTests
{
    [Fact]
    public void AMalformedOptionStopsTheModeWithOneLineAndExitCode2()
    {
        var output = RunBench("--model-steps --steps abc", out var exitCode);
        Assert.Equal(2, exitCode);
        Assert.Equal($"--steps abc: give the steps each shape records, a whole number from 1. Run with --model-steps --help for the mode's options.{Environment.NewLine}", output);
    }

    [Fact]
    public void AModeRunsWithTheOptionsGiven()
    {
        var output = RunBench("--model-steps --model-shapes 2x8x2x4,3x16x2x5 --steps 2", out var exitCode, (RoutingStats.AcceleratorVariable, "cpu"));
        Assert.Equal(0, exitCode);
        Assert.Contains("2 steps a shape", output, StringComparison.Ordinal);
        Assert.Contains("2x8x2x4: 2 step launches; window load equal to the managed engine's", output, StringComparison.Ordinal);
        Assert.Contains("3x16x2x5: 2 step launches; window load equal to the managed engine's", output, StringComparison.Ordinal);
    }

    /// <summary>
    /// Runs the bench as the device scripts do where the tests are published self-contained (the GPU machine has no
    /// SDK: the bench's own executable, beside the runtime's host library), else through the dotnet host.
    /// </summary>
    private static string RunBench(string arguments, out int exitCode, params (string Name, string Value)[] environment)
    {
        var folder = AppContext.BaseDirectory;
        var selfContained = File.Exists(Path.Combine(folder, "libhostfxr.so")) && File.Exists(Path.Combine(folder, "MoeGpuStats.Bench"));
        return selfContained
            ? ExternalProgram.Run(Path.Combine(folder, "MoeGpuStats.Bench"), arguments, out exitCode, environment)
            : ExternalProgram.Run(Moegs.DotnetHost(), $"\"{Path.Combine(folder, "MoeGpuStats.Bench.dll")}\" {arguments}", out exitCode, environment);
    }
}
