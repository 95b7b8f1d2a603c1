using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace MoeGpuStats.Bench;

/// <summary>
/// A short job with the memory diagnoser and the accelerator column, or the job <c>--job</c> names instead (<c>--job Dry</c> to try a suite).
/// <c>--in-process</c> runs in this process, for the GPU machine, which has no SDK to build the usual benchmark child
/// process with.
/// </summary>
internal static class BenchConfig
{
    public const string InProcess = "--in-process";

    /// <summary>The config: the short job unless the command line names one, which would otherwise run beside it.</summary>
    public static IConfig Create(string[] args)
    {
        var config = DefaultConfig.Instance.AddDiagnoser(MemoryDiagnoser.Default).AddColumn(new AcceleratorColumn()).WithOptions(ConfigOptions.DisableOptimizationsValidator);
        if (NamesAJob(args))
        {
            return config;
        }

        var job = args.Contains(InProcess) ? Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance) : Job.ShortRun;
        return config.AddJob(job);
    }

    /// <summary>
    /// The arguments for BenchmarkDotNet: ours taken out (it rejects options it does not know), and <c>--in-process</c>
    /// given to a job the command line names as BenchmarkDotNet's own <c>--inProcess</c>.
    /// </summary>
    public static string[] SwitcherArguments(string[] args) =>
        [.. args.Where(arg => arg != InProcess), .. NamesAJob(args) && args.Contains(InProcess) ? ["--inProcess"] : Array.Empty<string>()];

    private static bool NamesAJob(string[] args) => args.Any(arg => arg is "--job" or "-j" || arg.StartsWith("--job=", StringComparison.Ordinal));
}
