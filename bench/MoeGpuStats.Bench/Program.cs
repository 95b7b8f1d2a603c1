using BenchmarkDotNet.Running;
using MoeGpuStats.Bench;

// Quick modes that print one table or line each, picked by their flag; everything else goes to BenchmarkDotNet.
try
{
    if (QuickModes.Run(args, Console.Error) is { } exitCode)
    {
        return exitCode;
    }
}
catch (NoSuchDeviceException exception)
{
    // The GPU checks ask for CUDA by name: a machine without one says so in a line and stops at once.
    Console.Error.WriteLine(exception.Message);
    return 3;
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(BenchConfig.SwitcherArguments(args), BenchConfig.Create(args));
return 0;
