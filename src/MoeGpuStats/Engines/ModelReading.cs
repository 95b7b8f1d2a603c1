using MoeGpuStats.Kernels.Model;

namespace MoeGpuStats.Engines;

/// <summary>
/// What one reading of a model takes (<see cref="ModelRoutingEngine.Read"/>): the balance of every layer
/// over the window (or its newest steps) and since the start always, the rest on request. A device engine
/// answers all of it with one wait for its stream.
/// </summary>
internal readonly record struct ModelReadRequest
{
    /// <summary>The newest steps of the window the balance covers, 1 to <c>Window</c> (validated by the caller); <c>Window</c> covers all of it.</summary>
    public required int RecentSteps { get; init; }

    /// <summary>The rank of each expert (validated), or null to measure over the experts.</summary>
    public int[]? Ranks { get; init; }

    /// <summary>The ranks measured: the largest in <see cref="Ranks"/> plus one; 0 without ranks.</summary>
    public int RankCount { get; init; }

    /// <summary>A second, shorter horizon whose balance is measured beside (1 to <c>Window</c>), or null; left out where the window cannot be cut to it (<see cref="ModelRoutingEngine.CanCutWindow"/>).</summary>
    public int? AlsoRecentSteps { get; init; }

    /// <summary>Whether each layer's running totals are read.</summary>
    public bool Totals { get; init; }

    /// <summary>Whether the whole window's load is read, <c>[layers, experts]</c>.</summary>
    public bool WindowLoad { get; init; }

    /// <summary>Whether each layer's slots per expert since the start are read, <c>[layers, experts]</c>.</summary>
    public bool TokenCounts { get; init; }
}

/// <summary>One reading of a model, taken under its lock: every part is of the same step.</summary>
/// <param name="Steps">Steps recorded.</param>
/// <param name="WindowSteps">Steps <paramref name="Window"/> covers: at most the request's <c>RecentSteps</c> and the steps the window holds.</param>
/// <param name="Window">Per layer, the load figures over <paramref name="WindowSteps"/> steps.</param>
/// <param name="SinceStart">Per layer, the load figures since the start.</param>
/// <param name="Recent">Per layer, the load figures over the <c>AlsoRecentSteps</c> horizon; null when not asked or not possible.</param>
/// <param name="RecentSteps">Steps <paramref name="Recent"/> covers (0 without it).</param>
/// <param name="Totals">Each layer's running totals, when asked.</param>
/// <param name="WindowLoad">The whole window's load, <c>[layers, experts]</c>, when asked.</param>
/// <param name="TokenCounts">Each layer's slots per expert since the start, <c>[layers, experts]</c>, when asked.</param>
internal sealed record ModelReading(
    ulong Steps,
    int WindowSteps,
    LayerLoad[] Window,
    LayerLoad[] SinceStart,
    LayerLoad[]? Recent,
    int RecentSteps,
    RoutingTotals[]? Totals,
    ulong[]? WindowLoad,
    ulong[]? TokenCounts);
