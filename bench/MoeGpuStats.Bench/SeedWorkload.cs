using System.CommandLine;
using System.Diagnostics;

namespace MoeGpuStats.Bench;

/// <summary>
/// The workload the seed was timed on, for the managed engine: 64 xorshift64 decisions recorded
/// round-robin 200,000 times, 200,000 latencies, 20,000 p99 queries, 20,000 CV + trend(100) queries.
/// Prints <c>experts=E record_routing_ns=.. record_latency_ns=.. p99_query_ns=.. cv_trend_query_ns=..</c>.
/// </summary>
internal static class SeedWorkload
{
    private const int Records = 200_000;
    private const int Latencies = 200_000;
    private const int Queries = 20_000;

    private static readonly Option<int> Experts = QuickOptions.OptionalWholeNumber("--seed-workload", 256, 1, RoutingStatsOptions.MaxExperts, "the experts of the workload");

    public static QuickMode Mode { get; } = new(Experts, "Times the seed's workload on the managed engine.", [], Run);

    private static int Run(ParseResult parsed)
    {
        var experts = parsed.GetValue(Experts);
        var decisions = Decisions(experts);
        var stats = new RoutingStats();

        // Untimed passes until the JIT has settled on optimized code (tier-up waits ~100 ms after
        // 30 calls, and runs in the background); the timed pass starts from a reset state.
        var warmUp = Stopwatch.StartNew();
        while (warmUp.Elapsed < TimeSpan.FromSeconds(2))
        {
            Measure(stats, decisions);
            stats.Reset();
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread();
        var (record, latency, p99, cvTrend, sink) = Measure(stats, decisions);
        var perRecordBytes = (GC.GetAllocatedBytesForCurrentThread() - allocated) / (double)(Records + Latencies);
        Console.WriteLine(
            $"experts={experts} record_routing_ns={record:F1} record_latency_ns={latency:F1} p99_query_ns={p99:F1} cv_trend_query_ns={cvTrend:F1}");
        Console.Error.WriteLine($"(allocated {perRecordBytes:F2} bytes per record; checksum {sink:G6})");
        return 0;
    }

    private static (double Record, double Latency, double P99, double CvTrend, double Sink) Measure(RoutingStats stats, RoutingDecision[] decisions)
    {
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < Records; i++)
        {
            stats.RecordRouting(decisions[i % decisions.Length]);
        }

        var record = Nanoseconds(clock, Records);
        clock.Restart();
        for (var i = 0; i < Latencies; i++)
        {
            stats.RecordRoutingLatency(TimeSpan.FromTicks((1000 + (long)i * 7919 % 100_000) / 100));
        }

        var latency = Nanoseconds(clock, Latencies);
        var sink = 0.0;
        clock.Restart();
        for (var i = 0; i < Queries; i++)
        {
            sink += stats.RoutingLatencyStats.P99Latency();
        }

        var p99 = Nanoseconds(clock, Queries);
        clock.Restart();
        for (var i = 0; i < Queries; i++)
        {
            sink += stats.UtilizationCv() + stats.RecentLoadVarianceTrend(100);
        }

        return (record, latency, p99, Nanoseconds(clock, Queries), sink);
    }

    private static double Nanoseconds(Stopwatch clock, int operations) => clock.Elapsed.TotalNanoseconds / operations;

    private static RoutingDecision[] Decisions(int experts)
    {
        var x = 88172645463325252UL;
        ulong Next()
        {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            return x;
        }

        var decisions = new RoutingDecision[64];
        for (var d = 0; d < decisions.Length; d++)
        {
            var counts = new int[experts];
            long sum = 0;
            for (var e = 0; e < experts; e++)
            {
                counts[e] = (int)(Next() % 512);
                sum += counts[e];
            }

            var tokens = (int)(sum / 8);
            decisions[d] = new RoutingDecision
            {
                ExpertCapacities = counts,
                TotalTokens = tokens,
                TokensDropped = (int)(Next() % 4),
                LoadBalanceLoss = 0.5f,
                RouterZLoss = 0.01f,
            };
        }

        return decisions;
    }
}
