using System.CommandLine;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Commands;

var root = new RootCommand(
    """
    moegs: Mixture-of-Experts routing statistics (tokens per expert, load imbalance, utilization,
    dropped tokens, losses, latency), kept on the GPU with ILGPU.

    Engine: the best accelerator present (CUDA, then OpenCL, then the managed engine);
    set MOEGS_ACCELERATOR=cuda|opencl|cpu|managed to choose (cpu = ILGPU's CPU accelerator).

    Start with:  moegs simulate            (synthetic routing, then a report)
                 moegs replay ids.npy      (your router's saved top-k ids)
                 moegs report run.json     (a snapshot saved with --save)

    Exit codes: 0 done, 1 unreadable or malformed input file, 2 invalid arguments,
                3 the accelerator named by MOEGS_ACCELERATOR is not present.
    """);
root.Subcommands.Add(SimulateCommand.Create());
root.Subcommands.Add(ReplayCommand.Create());
root.Subcommands.Add(SnapshotCommands.Report());
root.Subcommands.Add(SnapshotCommands.Merge());
var result = root.Parse(args);
return result.Errors.Count > 0 ? PrintErrors(result) : await result.InvokeAsync();

static int PrintErrors(ParseResult result)
{
    foreach (var error in result.Errors)
    {
        Console.Error.WriteLine(error.Message);
    }

    Console.Error.WriteLine("Run with --help for usage.");
    return ExitCodes.Usage;
}
