using System.Diagnostics;

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
        var output = Run(Path.Combine(NativeOut(), "test_moegs"), "", out var exitCode);
        Assert.True(exitCode == 0, output);
        Assert.Contains(", 0 failed", output);
    }

    [Fact]
    public void ThePythonWrapperSeesTheManagedEnginesNumbers()
    {
        var root = NativeOut();
        var python = FindOnPath("python3") ?? Skip("python3 is not on PATH");
        var tests = Path.GetFullPath(Path.Combine(root, "..", "..", "python", "tests"));
        var output = Run(python, $"-m unittest discover -s \"{tests}\" -v", out var exitCode, ("MOEGS_LIB", Path.Combine(root, "libmoegs.so")));
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

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);

    private static string Run(string file, string arguments, out int exitCode, params (string Name, string Value)[] environment)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
        {
            process.Kill(entireProcessTree: true);
        }

        exitCode = process.HasExited ? process.ExitCode : -1;
        return stdout.Result + stderr.Result;
    }
}
