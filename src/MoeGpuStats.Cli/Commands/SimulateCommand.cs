using System.CommandLine;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>simulate</c>: synthetic top-k routing recorded on the chosen engine.</summary>
internal static class SimulateCommand
{
    public static Command Create()
    {
        var experts = new Option<int>("--experts", "-e") { Description = "Experts (E), 1 to 4,096.", DefaultValueFactory = _ => 64 };
        var topK = new Option<int>("--top-k", "-k") { Description = "Experts per token (k), 1 to E.", DefaultValueFactory = _ => 2 };
        var tokens = new Option<int>("--tokens", "-t") { Description = "Tokens per batch.", DefaultValueFactory = _ => 4096 };
        var steps = new Option<int>("--steps", "-n") { Description = "Batches to route.", DefaultValueFactory = _ => 200 };
        var skew = new Option<double>("--skew", "-s") { Description = "Load skew: 1 is uniform; larger sends more tokens to low-numbered experts (id = floor(u^skew * E)).", DefaultValueFactory = _ => 2.0 };
        var seed = new Option<int>("--seed") { Description = "Random seed, for repeatable runs.", DefaultValueFactory = _ => 1 };
        var recording = new SharedOptions.Recording();

        var command = new Command("simulate", "Route synthetic batches (k distinct experts per token, skewed load) on the chosen engine, then print the performance report and the utilization summary.")
        {
            experts, topK, tokens, steps, skew, seed,
        };
        recording.AddTo(command);
        command.SetAction(parse =>
        {
            var e = parse.GetValue(experts);
            var k = parse.GetValue(topK);
            var t = parse.GetValue(tokens);
            var n = parse.GetValue(steps);
            var s = parse.GetValue(skew);
            if (e < 1 || e > RoutingStatsOptions.MaxDeviceExperts || k < 1 || k > e || t < 0 || n < 0 || !(s > 0) || recording.ExpertCapacity(parse) is < 1)
            {
                Console.Error.WriteLine($"Need 1 <= --experts <= {RoutingStatsOptions.MaxDeviceExperts}, 1 <= --top-k <= experts, --tokens >= 0, --steps >= 0, --skew > 0, --capacity >= 1.");
                return ExitCodes.Usage;
            }

            var random = new Random(parse.GetValue(seed));
            var ids = new int[t * k];
            var session = recording.Session(parse, e, $"simulate: {n} batches of {t} tokens, top-{k} of {e} experts");
            return session.Run(n, (stats, _) =>
            {
                Fill(ids, random, e, k, s);
                stats.RecordRouting(ids, t, k, loadBalanceLoss: (float)(1.0 + 0.1 * random.NextDouble()), routerZLoss: (float)(0.01 * random.NextDouble()));
            });
        });
        return command;
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
