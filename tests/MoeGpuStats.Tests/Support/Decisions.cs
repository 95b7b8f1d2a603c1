namespace MoeGpuStats.Tests.Support;

/// <summary>Routing decisions for the tests of <see cref="RoutingStats"/> and its parts: bad ones of each kind, seeded statistics, random sequences.</summary>
public static class Decisions
{
    /// <summary>The kinds of bad decision that <see cref="Bad"/> makes.</summary>
    public static TheoryData<string> BadDecisions => ["no experts", "negative count", "negative tokens", "dropped > tokens", "negative dropped", "NaN loss", "infinite z-loss", "too many experts"];

    /// <summary>A decision of the kind <paramref name="kind"/> names (one of <see cref="BadDecisions"/>), which every record refuses.</summary>
    internal static RoutingDecision Bad(string kind) => kind switch
    {
        "no experts" => new RoutingDecision { ExpertCapacities = [], TotalTokens = 4 },
        "negative count" => new RoutingDecision { ExpertCapacities = [3, -1], TotalTokens = 4 },
        "negative tokens" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = -4 },
        "dropped > tokens" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, TokensDropped = 5 },
        "negative dropped" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, TokensDropped = -1 },
        "NaN loss" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, LoadBalanceLoss = float.NaN },
        "infinite z-loss" => new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, RouterZLoss = float.PositiveInfinity },
        "too many experts" => new RoutingDecision { ExpertCapacities = new int[RoutingStatsOptions.MaxExperts + 1], TotalTokens = 4 },
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Statistics of one decision (4 experts, a dropped token, a loss) and one latency of 3 ms.</summary>
    internal static RoutingStats Seeded()
    {
        var stats = new RoutingStats();
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [5, 3, 2, 0], TotalTokens = 10, TokensDropped = 1, LoadBalanceLoss = 0.1f });
        stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(3));
        return stats;
    }

    /// <summary>Records <paramref name="steps"/> random decisions of 8 skewed experts, a third of them latencies instead.</summary>
    internal static void Feed(RoutingStats stats, Random random, int steps)
    {
        for (var i = 0; i < steps; i++)
        {
            if (random.Next(3) == 0)
            {
                stats.RecordRoutingLatency(TimeSpan.FromTicks(random.Next(0, 1_000_000)));
                continue;
            }

            var counts = new int[8];
            var tokens = random.Next(0, 200);
            for (var t = 0; t < tokens * 2; t++)
            {
                counts[Math.Min(7, (int)(random.NextDouble() * random.NextDouble() * 8))]++;
            }

            stats.RecordRouting(new RoutingDecision
            {
                ExpertCapacities = counts,
                TotalTokens = tokens,
                TokensDropped = random.Next(0, tokens + 1) / 4,
                LoadBalanceLoss = (float)random.NextDouble(),
                RouterZLoss = (float)random.NextDouble() / 10,
            });
        }
    }
}
