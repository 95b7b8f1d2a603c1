using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using MoeGpuStats.Monitoring;

namespace MoeGpuStats.Cli;

/// <summary><c>simulate</c>: synthetic top-k routing recorded on the chosen engine.</summary>
internal static class SimulateCommand
{
    public static Command Create()
    {
        var experts = new Option<int>("--experts", "-e") { Description = "Experts (E).", DefaultValueFactory = _ => 64 };
        var topK = new Option<int>("--top-k", "-k") { Description = "Experts per token (k).", DefaultValueFactory = _ => 2 };
        var tokens = new Option<int>("--tokens", "-t") { Description = "Tokens per batch.", DefaultValueFactory = _ => 4096 };
        var steps = new Option<int>("--steps", "-n") { Description = "Batches to route.", DefaultValueFactory = _ => 200 };
        var skew = new Option<double>("--skew", "-s") { Description = "Load skew: 1 is uniform, larger sends more tokens to low-numbered experts (id = floor(u^skew * E)).", DefaultValueFactory = _ => 2.0 };
        var capacity = new Option<int?>("--capacity") { Description = "Slots per expert per batch; drops are derived from it when given." };
        var seed = new Option<int>("--seed") { Description = "Random seed, for repeatable runs.", DefaultValueFactory = _ => 1 };
        var interval = new Option<double>("--report-interval") { Description = "Seconds between periodic reports.", DefaultValueFactory = _ => 5.0 };
        var json = new Option<bool>("--json") { Description = "Print only the final snapshot as seed-compatible JSON on standard output." };

        var command = new Command("simulate", "Route synthetic batches on the chosen engine, then print the performance report and the utilization summary.")
        {
            experts, topK, tokens, steps, skew, capacity, seed, interval, json,
        };
        command.SetAction(parse => Run(
            parse.GetValue(experts),
            parse.GetValue(topK),
            parse.GetValue(tokens),
            parse.GetValue(steps),
            parse.GetValue(skew),
            parse.GetValue(capacity),
            parse.GetValue(seed),
            parse.GetValue(interval),
            parse.GetValue(json)));
        return command;
    }

    private static int Run(int experts, int topK, int tokens, int steps, double skew, int? capacity, int seed, double interval, bool json)
    {
        // With --json, standard output carries the JSON alone; the report goes to standard error.
        using var loggerFactory = LoggerFactory.Create(builder => builder
            .AddSimpleConsole(o => { o.SingleLine = true; o.IncludeScopes = false; })
            .AddConsole(o => o.LogToStandardErrorThreshold = json ? LogLevel.Trace : LogLevel.None));
        var logger = loggerFactory.CreateLogger("MoeGpuStats");
        if (experts < 1 || experts > RoutingStatsOptions.MaxDeviceExperts || topK < 1 || topK > experts || tokens < 0 || steps < 0 || skew <= 0)
        {
            Console.Error.WriteLine($"Need 1 <= --experts <= {RoutingStatsOptions.MaxDeviceExperts}, 1 <= --top-k <= experts, --tokens >= 0, --steps >= 0, --skew > 0.");
            return 2;
        }

        RoutingStats stats;
        try
        {
            stats = RoutingStats.Create(new RoutingStatsOptions { Experts = experts, ExpertCapacity = capacity }, logger);
        }
        catch (InvalidOperationException exception)
        {
            Console.Error.WriteLine(exception.Message);
            return 3;
        }

        using var monitor = new PerformanceMonitor(TimeSpan.FromSeconds(interval), logger, stats);
        var random = new Random(seed);
        var ids = new int[tokens * topK];
        var lastReport = Stopwatch.GetTimestamp();
        for (var step = 0; step < steps; step++)
        {
            Fill(ids, random, experts, topK, skew);
            var started = Stopwatch.GetTimestamp();
            stats.RecordRouting(ids, tokens, topK, loadBalanceLoss: (float)(1.0 + 0.1 * random.NextDouble()), routerZLoss: (float)(0.01 * random.NextDouble()));
            stats.RecordRoutingLatency(Stopwatch.GetElapsedTime(started));
            if (Stopwatch.GetElapsedTime(lastReport).TotalSeconds >= interval)
            {
                monitor.PrintReport();
                lastReport = Stopwatch.GetTimestamp();
            }
        }

        using var snapshot = stats.Snapshot();
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(snapshot));
            return 0;
        }

        monitor.PrintReport();
        Console.WriteLine($"engine: {stats.Backend} ({stats.DeviceName}), {steps} batches of {tokens} tokens, top-{topK} of {experts} experts");
        foreach (var (key, value) in snapshot.UtilizationSummary().OrderBy(pair => pair.Key, StringComparer.Ordinal))
        {
            Console.WriteLine($"  {key,-28} {value,12:G6}");
        }

        Console.WriteLine($"  {"load_variance_trend(100)",-28} {snapshot.RecentLoadVarianceTrend(100),12:G6}");
        Console.WriteLine($"  {"tokens_dropped",-28} {snapshot.TokensDropped,12}");
        return 0;
    }

    /// <summary>k distinct experts per token, drawn with the skewed distribution.</summary>
    private static void Fill(int[] ids, Random random, int experts, int topK, double skew)
    {
        Span<int> chosen = stackalloc int[topK];
        for (var token = 0; token < ids.Length / topK; token++)
        {
            var picked = 0;
            while (picked < topK)
            {
                var id = Math.Min(experts - 1, (int)(Math.Pow(random.NextDouble(), skew) * experts));
                if (!chosen[..picked].Contains(id))
                {
                    chosen[picked++] = id;
                }
            }

            chosen.CopyTo(ids.AsSpan(token * topK, topK));
        }
    }
}
