using System.Globalization;
using MoeGpuStats.Cli;

namespace MoeGpuStats.Tests.Support;

/// <summary>
/// <c>moegs</c> for the CLI tests: run in-process as a user runs it (exit code, standard output and error), or
/// started as a process of its own where a test must set its environment or signal it.
/// </summary>
internal static class Moegs
{
    /// <summary>Runs <c>moegs</c> with <paramref name="args"/> in-process, as a user runs it: the exit code and what it wrote to standard output and error.</summary>
    public static (int Code, string Out, string Error) Run(params string[] args)
    {
        using var output = new StringWriter(CultureInfo.InvariantCulture);
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        var code = MoegsCommandLine.RunAsync(args, new CliConsole(output, error, ErrorIsTerminal: false)).GetAwaiter().GetResult();
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>The dotnet host that runs moegs.dll as a process of its own, or a skip where there is none.</summary>
    public static string DotnetHost()
    {
        var dotnet = ExternalProgram.FindOnPath("dotnet") ?? Path.Combine(Environment.GetEnvironmentVariable("DOTNET_ROOT") ?? "/usr/share/dotnet", "dotnet");
        Assert.SkipUnless(File.Exists(dotnet), "no dotnet host to run moegs.dll with");
        return dotnet;
    }

    /// <summary>Starts moegs on the managed engine with its output redirected, for a test that signals it with kill(1).</summary>
    public static System.Diagnostics.Process StartSignallable(params string[] arguments)
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "needs kill(1) to signal moegs");
        var start = new System.Diagnostics.ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "moegs.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        start.Environment[RoutingStats.AcceleratorVariable] = "managed";
        return System.Diagnostics.Process.Start(start)!;
    }

    /// <summary>Reads <paramref name="process"/>'s standard error until it says that it serves the final state (--serve-after); fails if it ends first.</summary>
    public static async Task UntilServingTheFinalState(System.Diagnostics.Process process)
    {
        var cancel = TestContext.Current.CancellationToken;
        string? line;
        do
        {
            line = await process.StandardError.ReadLineAsync(cancel).AsTask().WaitAsync(Patience.GoAhead, cancel);
        }
        while (line is not null && !line.Contains("serving the final state", StringComparison.Ordinal));

        Assert.NotNull(line);
    }

    /// <summary>Sends <paramref name="process"/> SIGINT, as Ctrl-C does.</summary>
    public static Task Interrupt(System.Diagnostics.Process process) => Signal(process, "INT", times: 1);

    /// <summary>Sends <paramref name="process"/> the signal named (kill(1)'s name: INT, TERM, STOP, CONT) <paramref name="times"/> times in one call, as close together as kill(1) sends them.</summary>
    public static async Task Signal(System.Diagnostics.Process process, string signal, int times)
    {
        var id = process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var kill = System.Diagnostics.Process.Start("kill", [$"-{signal}", .. Enumerable.Repeat(id, times)]);
        await kill.WaitForExitAsync(TestContext.Current.CancellationToken);
    }

    /// <summary>Ends a moegs process a test started, should the test fail before the process ends.</summary>
    public sealed class ProcessCleanup(System.Diagnostics.Process process) : IDisposable
    {
        public void Dispose()
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }
}
