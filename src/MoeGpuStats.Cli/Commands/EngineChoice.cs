namespace MoeGpuStats.Cli.Commands;

/// <summary>The engine a recording command asks for (<c>MOEGS_ACCELERATOR</c>), checked before anything runs, and described after.</summary>
internal static class EngineChoice
{
    private static string? Requested => Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable)?.Trim();

    /// <summary>Why the variable's value is not one we know (a usage error), or null.</summary>
    public static string? Problem() =>
        Requested is { Length: > 0 } value && !RoutingStats.AcceleratorNames.Contains(value.ToLowerInvariant())
            ? $"{RoutingStats.AcceleratorVariable}={value}: give one of {string.Join(", ", RoutingStats.AcceleratorNames)}, or leave it unset for the best accelerator present."
            : null;

    /// <summary>Which engine counted, in the report's words, with the reason when it is the fallback.</summary>
    public static string Describe(RoutingStats stats) => Describe(stats.Backend, stats.DeviceName, "no CUDA or OpenCL device found; using the managed engine");

    /// <inheritdoc cref="Describe(RoutingStats)"/>
    /// <remarks>A whole model's best engine is CUDA, then managed (<c>AcceleratorSelection.ModelBestFirst</c>): its fallback says so.</remarks>
    public static string Describe(ModelRoutingStats stats) =>
        Describe(stats.Backend, stats.DeviceName, $"no CUDA device found; using the managed engine (a whole model runs on OpenCL only when {RoutingStats.AcceleratorVariable}=opencl names it)");

    private static string Describe(string engine, string device, string fallback) => (Requested is { Length: > 0 } value ? value.ToLowerInvariant() : null, engine) switch
    {
        (null, "managed") => fallback,
        (null, var backend) => $"{backend} on {device} (the best accelerator present)",
        (var chosen, "managed") => $"the managed engine ({RoutingStats.AcceleratorVariable}={chosen})",
        (var chosen, "cpu") => $"ILGPU's CPU accelerator ({RoutingStats.AcceleratorVariable}={chosen})",
        (var chosen, var backend) => $"{backend} on {device} ({RoutingStats.AcceleratorVariable}={chosen})",
    };
}
