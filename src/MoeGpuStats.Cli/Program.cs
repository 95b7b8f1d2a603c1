using MoeGpuStats.Cli;

return await MoegsCommandLine.RunAsync(args, CliConsole.System, handleSignals: true);
