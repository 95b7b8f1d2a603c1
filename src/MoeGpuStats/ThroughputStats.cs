namespace MoeGpuStats;

/// <summary>Throughput figures derived from a <see cref="RoutingStats"/> (the seed's <c>ThroughputStats</c>).</summary>
/// <param name="TotalTokens">Tokens recorded.</param>
/// <param name="TotalRoutings">Batches recorded.</param>
/// <param name="TokensPerRouting">Mean tokens per batch.</param>
/// <param name="RoutingEfficiency">
/// <see cref="RoutingStats.RoutingEfficiency"/>: the percentage of routed units kept, token-expert slots for
/// top-k ids and tokens for <see cref="RoutingDecision"/>s; 0 until something is routed.
/// </param>
/// <param name="AverageLatency">Mean routing latency in milliseconds.</param>
public sealed record ThroughputStats(
    ulong TotalTokens,
    ulong TotalRoutings,
    float TokensPerRouting,
    float RoutingEfficiency,
    double AverageLatency)
{
    /// <summary>The record's members in the compiler's form, numbers written invariantly (<see cref="RecordText"/>).</summary>
    public override string ToString() => RecordText.Of(this);

    /// <summary>Tokens per second at the mean latency; 0 when no latency was recorded.</summary>
    public double TokensPerSecond() => AverageLatency > 0.0 ? TokensPerRouting * 1000.0 / AverageLatency : 0.0;

    /// <summary>Batches per second at the mean latency; 0 when no latency was recorded.</summary>
    public double RoutingsPerSecond() => AverageLatency > 0.0 ? 1000.0 / AverageLatency : 0.0;
}
