
namespace MoeGpuStats.Tests.Native;

/// <summary>
/// The C API through its real callers: the C test program and the Python wrapper's tests, run as
/// processes against native/out (built by native/build.sh; .ci/run builds it and sets
/// MOEGS_REQUIRE_NATIVE=1 so that a missing build fails instead of skipping).
/// </summary>
public sealed class NativeApiTests
{
    [Fact]
    public void TheCProgramSeesTheManagedEnginesNumbers()
    {
        var output = ExternalProgram.Run(Path.Combine(NativeOut(), "test_moegs"), "", out var exitCode);
        Assert.True(exitCode == 0, output);
        Assert.Contains(", 0 failed", output);
    }

    [Fact]
    public void ThePythonWrapperSeesTheManagedEnginesNumbers()
    {
        var root = NativeOut();
        var python = ExternalProgram.FindOnPath("python3") ?? Skip("python3 is not on PATH");
        var tests = Path.GetFullPath(Path.Combine(root, "..", "..", "python", "tests"));
        var output = ExternalProgram.Run(python, $"-m unittest discover -s \"{tests}\" -v", out var exitCode, ("MOEGS_LIB", Path.Combine(root, "libmoegs.so")));
        Assert.True(exitCode == 0, output);
        Assert.Contains("OK", output);
    }

    private static string NativeOut()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "native", "out");
            if (File.Exists(Path.Combine(dir.FullName, "MoeGpuStats.sln")))
            {
                if (File.Exists(Path.Combine(candidate, "libmoegs.so")))
                {
                    return candidate;
                }

                break;
            }
        }

        var reason = "native/out is not built: run `bash native/build.sh` (needs the .NET SDK and a C compiler)";
        if (Environment.GetEnvironmentVariable("MOEGS_REQUIRE_NATIVE") == "1")
        {
            Assert.Fail(reason);
        }

        return Skip(reason);
    }

    private static string Skip(string reason)
    {
        Assert.Skip(reason);
        return reason;
    }
}
