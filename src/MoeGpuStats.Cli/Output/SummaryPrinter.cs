namespace MoeGpuStats.Cli.Output;

/// <summary>The end-of-run table a person reads: the seed's summary plus the figures behind it.</summary>
internal static class SummaryPrinter
{
    public static void Print(TextWriter output, RoutingStats stats, string heading)
    {
        output.WriteLine(heading);
        foreach (var (key, value) in stats.UtilizationSummary().OrderBy(pair => pair.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"  {key,-28} {value,14:G6}");
        }

        var throughput = stats.GetThroughputStats();
        output.WriteLine($"  {"load_variance_trend(100)",-28} {stats.RecentLoadVarianceTrend(100),14:G6}");
        output.WriteLine($"  {"total_routings",-28} {stats.TotalRoutings,14}");
        output.WriteLine($"  {"total_tokens",-28} {stats.TotalTokens,14}");
        output.WriteLine($"  {"tokens_dropped",-28} {stats.TokensDropped,14}");
        output.WriteLine($"  {"invalid_expert_ids",-28} {stats.InvalidExpertIds,14}");
        output.WriteLine($"  {"capacity_overall_percent",-28} {stats.CapacityStats.OverallUtilization(),14:G6}");
        output.WriteLine($"  {"p95_latency_ms",-28} {stats.RoutingLatencyStats.P95Latency(),14:G6}");
        output.WriteLine($"  {"tokens_per_second",-28} {throughput.TokensPerSecond(),14:G6}");
        if (stats.MostUtilizedExpert() is var (most, mostValue) && stats.LeastUtilizedExpert() is var (least, leastValue))
        {
            output.WriteLine($"  {"most_utilized_expert",-28} {most,14} ({mostValue:G4})");
            output.WriteLine($"  {"least_utilized_expert",-28} {least,14} ({leastValue:G4})");
        }
    }
}
