namespace MoeGpuStats.Cli.Output;

/// <summary>
/// The host's time per <see cref="ModelRoutingStats.RecordStep(ReadOnlySpan{int}, int, int, long, ReadOnlySpan{float}, ReadOnlySpan{float}, long)"/>
/// call of a run, the tokens of the timed steps, and what the times cover: the model report's "Time per
/// step", in the units of a single layer's "Time per batch" (milliseconds, the seed's <see cref="LatencyStats"/>).
/// </summary>
internal sealed class StepTimes
{
    private long _tokens;

    /// <summary>What a step's time covers and leaves out, in a phrase.</summary>
    public required string Timed { get; init; }

    /// <summary>The timed steps' times.</summary>
    public LatencyStats Latency { get; } = new();

    /// <summary>Adds one step's time and its tokens (per layer).</summary>
    public void Add(TimeSpan elapsed, int tokens)
    {
        Latency.RecordLatency(elapsed);
        _tokens += tokens;
    }

    /// <summary>The timed steps' tokens over their time: tokens a second, each counted once for all layers; null when no time was measured.</summary>
    public double? TokensPerSecond => Latency.TotalLatencyMs > 0 ? _tokens / (Latency.TotalLatencyMs / 1000.0) : null;
}
