using BenchmarkDotNet.Running;
using MoeGpuStats.Bench;

// Quick modes that print one table or line each; everything else goes to BenchmarkDotNet.
if (args.Contains("--seed-workload"))
{
    return SeedWorkload.Run(args);
}

if (args.Contains("--device-check"))
{
    return DeviceCheck.Run(args);
}

if (args.Contains("--model-check"))
{
    return ModelDeviceCheck.Run(args);
}

if (args.Contains("--emit-ptx"))
{
    return EmitPtx.Run(args);
}

// BenchmarkDotNet rejects options it does not know; --in-process is ours (BenchConfig reads it).
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run([.. args.Where(a => a != BenchConfig.InProcess)], BenchConfig.Create(args));
return 0;
