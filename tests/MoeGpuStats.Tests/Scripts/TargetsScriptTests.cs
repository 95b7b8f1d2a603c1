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
        var scripts = Path.Combine(Checkout.RequireRoot("scripts/targets.py is not here"), "scripts");
        var python = ExternalProgram.FindOnPath("python3") ?? Skip("python3 is not on PATH");
        var output = ExternalProgram.Run(python, $"-m unittest discover -s \"{scripts}\" -p test_targets.py -v", out var exitCode);
        Assert.True(exitCode == 0, output);

        // unittest's summary: some tests ran, and its verdict line is OK (with or without skips, which it names).
        Assert.Matches(@"Ran [1-9][0-9]* tests? in", output);
        Assert.Matches(@"(?m)^OK( \(|\r?$)", output);
    }

    private static string Skip(string reason)
    {
        Assert.Skip(reason);
        return reason;
    }
}
