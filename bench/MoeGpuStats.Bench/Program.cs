using BenchmarkDotNet.Running;
using MoeGpuStats.Bench;

// Quick modes that print one table or line each; everything else goes to BenchmarkDotNet.
if (args.Contains("--seed-workload"))
{
    return SeedWorkload.Run(args);
}

if (args.Contains("--model-step-alternation") || args.Contains("--model-step-processes"))
{
    try
    {
        return args.Contains("--model-step-alternation") ? ModelStepAlternation.Run(args) : ModelStepProcesses.Run(args);
    }
    catch (FormatException exception)
    {
        // A --model-shapes entry that is not LxExkxT: the line that says so, not a stack trace.
        Console.Error.WriteLine(exception.Message);
        return 2;
    }
}

if (args.Contains("--device-check") || args.Contains("--model-check"))
{
    try
    {
        return args.Contains("--device-check") ? DeviceCheck.Run(args) : ModelDeviceCheck.Run(args);
    }
    catch (NoSuchDeviceException exception)
    {
        // The GPU check asks for CUDA by name: a machine without one says so in a line and stops at once.
        Console.Error.WriteLine(exception.Message);
        return 3;
    }
}

if (args.Contains("--model-steps"))
{
    try
    {
        return ModelStepsRun.Run(args);
    }
    catch (FormatException exception)
    {
        Console.Error.WriteLine(exception.Message);
        return 2;
    }
    catch (NoSuchDeviceException exception)
    {
        Console.Error.WriteLine(exception.Message);
        return 3;
    }
}

if (args.Contains("--model-probe"))
{
    return ModelEngineProbe.Run(args);
}

if (args.Contains("--emit-ptx"))
{
    return EmitPtx.Run(args);
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(BenchConfig.SwitcherArguments(args), BenchConfig.Create(args));
return 0;
