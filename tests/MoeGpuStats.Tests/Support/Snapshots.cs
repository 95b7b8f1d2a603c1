using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Support;

/// <summary>Snapshot files and snapshot JSON for the tests that read them.</summary>
internal static class Snapshots
{
    /// <summary>Saves a snapshot of <paramref name="experts"/> experts (a batch routing every expert alike) as <paramref name="name"/> in <paramref name="folder"/>; returns its path.</summary>
    /// <param name="folder">The folder the file goes in.</param>
    /// <param name="name">The file's name.</param>
    /// <param name="experts">The experts.</param>
    /// <param name="firstSlot">The expert of the batch's first slot instead of expert 0 (another rank's snapshot), or −1.</param>
    public static string SaveSnapshot(this DirectoryInfo folder, string name, int experts, int firstSlot = -1)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = experts });
        stats.RecordRouting([.. Enumerable.Range(0, 4 * experts).Select(i => i == 0 && firstSlot >= 0 ? firstSlot : i % experts)], tokens: 2 * experts, topK: 2);
        var path = Path.Combine(folder.FullName, name);
        RoutingStatsFile.Save(stats, path);
        return path;
    }

    /// <summary>
    /// A snapshot of <paramref name="experts"/> experts as JSON, the seed's fields, with the given totals (and the efficiency and the
    /// batch that dropped they give) over <paramref name="totalRoutings"/> batches, each expert counting one slot.
    /// </summary>
    public static string Snapshot(ulong totalTokens, ulong tokensDropped, ulong totalRoutings = 1, int experts = 2) =>
        $$$"""
        {"total_routings":{{{totalRoutings}}},"total_tokens":{{{totalTokens}}},"tokens_dropped":{{{tokensDropped}}},"expert_utilization":[{{{string.Join(',', Enumerable.Repeat("0.5", experts))}}}],
         "average_load_balance_loss":0,"average_router_z_loss":0,"routing_efficiency":{{{Efficiency(totalTokens, tokensDropped)}}},"expert_token_counts":[{{{string.Join(',', Enumerable.Repeat(1, experts))}}}],
         "routing_latency_stats":{"total_measurements":0,"total_latency_ms":0,"min_latency_ms":null,"max_latency_ms":0,"recent_latencies":[]},
         "load_variance_history":[{{{string.Join(',', Enumerable.Repeat(0, (int)Math.Min(totalRoutings, 1_000)))}}}],
         "capacity_stats":{"average_utilization":0,"peak_utilization":0,"capacity_exceeded_count":{{{(tokensDropped > 0 ? 1 : 0)}}},"total_capacity":{{{totalRoutings * (ulong)experts * 100}}},"total_used":{{{experts}}}}}
        """;

    /// <summary>The seed's efficiency of these totals as its JSON writes it; 0 where the dropped are more than the tokens, which the reader refuses first.</summary>
    private static string Efficiency(ulong totalTokens, ulong tokensDropped) =>
        (totalTokens > 0 && tokensDropped <= totalTokens ? (float)(totalTokens - tokensDropped) / totalTokens * 100.0f : 0f).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
