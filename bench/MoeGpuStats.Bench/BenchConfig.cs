using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace MoeGpuStats.Bench;

/// <summary>
/// A short job with the memory diagnoser. <c>--in-process</c> runs in this process, for the GPU
/// machine, which has no SDK to build the usual benchmark child process with.
/// </summary>
internal static class BenchConfig
{
    public const string InProcess = "--in-process";

    public static IConfig Create(string[] args)
    {
        var job = Job.ShortRun;
        if (args.Contains(InProcess))
        {
            job = job.WithToolchain(InProcessEmitToolchain.Instance);
        }

        return DefaultConfig.Instance.AddJob(job).AddDiagnoser(MemoryDiagnoser.Default).WithOptions(ConfigOptions.DisableOptimizationsValidator);
    }
}
