namespace MoeGpuStats.Bench;

/// <summary>The bench's quick modes, each picked by its flag.</summary>
internal static class QuickModes
{
    public static IReadOnlyList<QuickMode> All { get; } =
    [
        SeedWorkload.Mode,
        ModelStepAlternation.Mode,
        ModelStepProcesses.Mode,
        DeviceCheck.Mode,
        ModelDeviceCheck.Mode,
        ModelStepsRun.Mode,
        ModelEngineProbe.Mode,
        EmitPtx.Mode,
    ];

    /// <summary>
    /// Runs the mode whose flag <paramref name="args"/> holds (<see cref="QuickMode.Invoke"/>) and returns its exit code;
    /// null where they hold none (a BenchmarkDotNet run). Two modes' flags are one line to <paramref name="error"/> and exit code 2.
    /// </summary>
    public static int? Run(string[] args, TextWriter error)
    {
        var chosen = All.Where(mode => args.Contains(mode.Flag)).ToArray();
        if (chosen.Length > 1)
        {
            error.WriteLine($"{string.Join(" and ", chosen.Select(mode => mode.Flag))} are two modes; give one at a time.");
            return 2;
        }

        return chosen.Length == 1 ? chosen[0].Invoke(args, error) : null;
    }
}
