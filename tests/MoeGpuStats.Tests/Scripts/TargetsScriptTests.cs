namespace MoeGpuStats.Tests.Scripts;

/// <summary>
/// scripts/targets.py, which judges the GPU check's targets from the checks' JSON, through its Python
/// tests (scripts/test_targets.py: fixed documents, verdicts held and missed), so that CI tests its
/// logic without a GPU.
/// </summary>
public sealed class TargetsScriptTests
{
    [Fact]
    public void TheTargetsScriptJudgesFixedChecks()
    {
        var scripts = ScriptsFolder();
        var python = ExternalProgram.FindOnPath("python3") ?? Skip("python3 is not on PATH");
        var output = ExternalProgram.Run(python, $"-m unittest discover -s \"{scripts}\" -p test_targets.py -v", out var exitCode);
        Assert.True(exitCode == 0, output);
        Assert.Contains("OK", output);
    }

    /// <summary>The checkout's scripts/; a packaged test run (the GPU machine) has none, and skips.</summary>
    private static string ScriptsFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "MoeGpuStats.sln")))
            {
                return Path.Combine(dir.FullName, "scripts");
            }
        }

        return Skip("no checkout above the test binaries: scripts/targets.py is not here");
    }

    private static string Skip(string reason)
    {
        Assert.Skip(reason);
        return reason;
    }
}
