using System.CommandLine;
using MoeGpuStats.Cli;

var root = new RootCommand(
    "MoeGpuStats: Mixture-of-Experts routing statistics (tokens per expert, load imbalance, utilization, drops, losses, latency) " +
    "kept on the GPU with ILGPU. The engine is the best accelerator present (CUDA, then OpenCL, then managed); " +
    "set MOEGS_ACCELERATOR=cuda|opencl|cpu|managed to choose.");
root.Subcommands.Add(SimulateCommand.Create());
return await root.Parse(args).InvokeAsync();
