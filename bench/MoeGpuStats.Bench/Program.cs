using BenchmarkDotNet.Running;
using MoeGpuStats.Bench;

// Two quick modes that print one table or line each; everything else goes to BenchmarkDotNet.
if (args.Contains("--seed-workload"))
{
    return SeedWorkload.Run(args);
}

if (args.Contains("--device-check"))
{
    return DeviceCheck.Run(args);
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, BenchConfig.Create(args));
return 0;
