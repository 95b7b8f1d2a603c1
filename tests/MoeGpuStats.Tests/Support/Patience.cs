namespace MoeGpuStats.Tests.Support;

/// <summary>How long a test waits for work that must go ahead while another thread holds a copy, a lock or a gate.</summary>
/// <remarks>
/// A loaded run is slow: xunit runs as many tests at once as there are cores, and they share the CPU accelerators
/// and the thread pool, so a step that takes milliseconds alone can take more than 10 s there. Work that does wait for
/// what is held never ends while it is held, so a long bound costs time only when a test fails.
/// </remarks>
internal static class Patience
{
    /// <summary>The bound on work that must go ahead meanwhile, or reach the point a test holds it at.</summary>
    public static readonly TimeSpan GoAhead = TimeSpan.FromMinutes(2);

    /// <summary>
    /// The longest a test holds a copy or a gate, so that a broken lock fails a test rather than hangs it: longer
    /// than <see cref="GoAhead"/>, so that no hold ends before a wait on what it holds does.
    /// </summary>
    public static readonly TimeSpan Hold = TimeSpan.FromMinutes(4);
}
