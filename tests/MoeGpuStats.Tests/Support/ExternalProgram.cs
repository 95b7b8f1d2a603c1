using System.Diagnostics;

namespace MoeGpuStats.Tests.Support;

/// <summary>Programs outside .NET that some tests run (the C test program, Python, NVIDIA's ptxas).</summary>
internal static class ExternalProgram
{
    public static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Select(folder => Path.Combine(folder, name)).FirstOrDefault(File.Exists);

    /// <summary>A python3 that imports torch: Debian's (where .ci/run installs python3-torch), else the one on PATH; null where neither does.</summary>
    public static string? PythonWithTorch() => PythonsWithTorch.Value;

    private static readonly Lazy<string?> PythonsWithTorch = new(() =>
        new[] { "/usr/bin/python3", FindOnPath("python3") }.FirstOrDefault(python =>
        {
            if (python is null || !File.Exists(python))
            {
                return false;
            }

            Run(python, "-c \"import torch\"", out var exitCode);
            return exitCode == 0;
        }));

    /// <summary>
    /// Runs <paramref name="file"/> (at most 3 minutes) and returns its standard output and error. The
    /// program gets <c>MOEGS_ACCELERATOR</c> only from <paramref name="environment"/>: the C API's "auto"
    /// follows it, and the programs' checks of "auto" expect the best accelerator present.
    /// </summary>
    public static string Run(string file, string arguments, out int exitCode, params (string Name, string Value)[] environment)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment.Remove(RoutingStats.AcceleratorVariable);
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
