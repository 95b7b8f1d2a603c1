using System.Collections.ObjectModel;

namespace MoeGpuStats.Tests.Support;

/// <summary>Routing decisions for the tests of <see cref="RoutingStats"/> and its parts: bad ones of each kind, seeded statistics, random sequences.</summary>
public static class Decisions
{
    /// <summary>The kinds of bad decision that <see cref="Bad"/> makes.</summary>
    public static TheoryData<string> BadDecisions =>
    [
        "no experts", "negative count", "most negative count", "negative count in a List", "negative count in a read-only list", "negative tokens",
        "dropped > tokens", "negative dropped", "NaN loss", "-infinite loss", "infinite z-loss", "NaN z-loss", "too many experts",
    ];

    /// <summary>
    /// A decision of the kind <paramref name="kind"/> names (one of <see cref="BadDecisions"/>), which every record refuses,
    /// and how the refusal's message starts. Counts come as an array, a <see cref="List{T}"/> (read as spans) and a list
    /// of neither kind (read one by one); a collection expression typed <see cref="IReadOnlyList{T}"/> is of the last.
    /// </summary>
    internal static (RoutingDecision Decision, string Refusal) Bad(string kind) => kind switch
    {
        "no experts" => (new RoutingDecision { ExpertCapacities = [], TotalTokens = 4 }, "The routing decision has no experts"),
        "negative count" => (new RoutingDecision { ExpertCapacities = new[] { 3, -1 }, TotalTokens = 4 }, "ExpertCapacities[1] is -1;"),
        "most negative count" => (new RoutingDecision { ExpertCapacities = new[] { int.MinValue, 1 }, TotalTokens = 4 }, "ExpertCapacities[0] is -2147483648;"),
        "negative count in a List" => (new RoutingDecision { ExpertCapacities = new List<int> { 3, 0, -1 }, TotalTokens = 4 }, "ExpertCapacities[2] is -1;"),
        "negative count in a read-only list" => (new RoutingDecision { ExpertCapacities = new ReadOnlyCollection<int>([3, -1, 0]), TotalTokens = 4 }, "ExpertCapacities[1] is -1;"),
        "negative tokens" => (new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = -1 }, "TotalTokens is -1;"),
        "dropped > tokens" => (new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, TokensDropped = 5 }, "TokensDropped is 5;"),
        "negative dropped" => (new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, TokensDropped = -1 }, "TokensDropped is -1;"),
        "NaN loss" => (new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, LoadBalanceLoss = float.NaN }, "LoadBalanceLoss is NaN;"),
        "-infinite loss" => (new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, LoadBalanceLoss = float.NegativeInfinity }, "LoadBalanceLoss is -Infinity;"),
        "infinite z-loss" => (new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, RouterZLoss = float.PositiveInfinity }, "RouterZLoss is Infinity;"),
        "NaN z-loss" => (new RoutingDecision { ExpertCapacities = [3, 1], TotalTokens = 4, RouterZLoss = float.NaN }, "RouterZLoss is NaN;"),
        "too many experts" => (new RoutingDecision { ExpertCapacities = new int[RoutingStatsOptions.MaxExperts + 1], TotalTokens = 4 }, "ExpertCapacities holds 1,048,577 experts;"),
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
