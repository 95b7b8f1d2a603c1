namespace MoeGpuStats.Engines;

/// <summary>
/// A model whose window keeps its load but not its ring of steps (read from a file without the ring, or a merge or
/// snapshot of one) was asked for what only the ring holds: a step, its newest steps, a checkpoint. An
/// <see cref="InvalidOperationException"/> to .NET callers; its own type lets the C API answer it as a refused argument,
/// not a device's failure.
/// </summary>
internal sealed class NoWindowRingException(string message, int recentSteps = 0, int windowSteps = 0, int window = 0) : InvalidOperationException(message)
{
    /// <summary>For a cut of the window, the newest steps asked for; 0 for a step or a checkpoint.</summary>
    public int RecentSteps { get; } = recentSteps;

    /// <summary>For a cut, the steps the window holds, the fewest it can be cut to.</summary>
    public int WindowSteps { get; } = windowSteps;

    /// <summary>For a cut, the window's length in steps.</summary>
    public int Window { get; } = window;
}
