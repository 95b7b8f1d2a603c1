namespace MoeGpuStats.Bench;

/// <summary>The bench's quick modes, in the order their flags are looked for on the command line.</summary>
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

    /// <summary>The mode whose flag <paramref name="args"/> holds (the first in <see cref="All"/>), or null: a BenchmarkDotNet run.</summary>
    public static QuickMode? For(string[] args) => All.FirstOrDefault(mode => args.Contains(mode.Flag));
}
