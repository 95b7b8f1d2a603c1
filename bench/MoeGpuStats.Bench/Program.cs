using BenchmarkDotNet.Running;
using MoeGpuStats.Bench;

// Quick modes that print one table or line each; everything else goes to BenchmarkDotNet.
Func<string[], int>? quickMode = args switch
{
    _ when args.Contains("--seed-workload") => SeedWorkload.Run,
    _ when args.Contains("--model-step-alternation") => ModelStepAlternation.Run,
    _ when args.Contains("--model-step-processes") => ModelStepProcesses.Run,
    _ when args.Contains("--device-check") => DeviceCheck.Run,
    _ when args.Contains("--model-check") => ModelDeviceCheck.Run,
    _ when args.Contains("--model-steps") => ModelStepsRun.Run,
    _ when args.Contains("--model-probe") => ModelEngineProbe.Run,
    _ when args.Contains("--emit-ptx") => EmitPtx.Run,
    _ => null,
};
if (quickMode is not null)
{
    try
    {
        return quickMode(args);
    }
    catch (FormatException exception)
    {
        // A --model-shapes entry that is not LxExkxT: the line that says so, not a stack trace.
        Console.Error.WriteLine(exception.Message);
        return 2;
    }
    catch (NoSuchDeviceException exception)
    {
        // The GPU checks ask for CUDA by name: a machine without one says so in a line and stops at once.
        Console.Error.WriteLine(exception.Message);
        return 3;
    }
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(BenchConfig.SwitcherArguments(args), BenchConfig.Create(args));
return 0;
