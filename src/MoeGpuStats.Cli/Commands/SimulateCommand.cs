using System.CommandLine;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>simulate</c>: synthetic top-k routing recorded on the chosen engine.</summary>
internal static class SimulateCommand
{
    /// <summary>Random draws of one pick before the nearest free expert is taken: a steep skew with k near E would draw for ever.</summary>
    private const int DrawsPerPick = 64;

    public static Command Create(CliConsole console)
    {
        var maxExperts = RoutingStatsOptions.MaxDeviceExperts;
        var experts = SharedOptions.WholeNumber(
            new Option<int>("--experts", "-e") { Description = $"Experts (E), 1 to {maxExperts:N0}.", DefaultValueFactory = _ => 64 }, 1, maxExperts, "the number of experts");
        var topK = SharedOptions.WholeNumber(
            new Option<int>("--top-k", "-k") { Description = "Experts per token (k), 1 to E.", DefaultValueFactory = _ => 2 }, 1, maxExperts, "experts per token");
        var tokens = SharedOptions.WholeNumber(
            new Option<int>("--tokens", "-t") { Description = $"Tokens per batch; tokens x k at most {NpyIds.MaxIdsPerStep:N0}.", DefaultValueFactory = _ => 4096 }, 1, int.MaxValue, "tokens per batch");
        var steps = SharedOptions.WholeNumber(
            new Option<int>("--steps", "-n") { Description = "Batches to route, at least 1.", DefaultValueFactory = _ => 200 }, 1, int.MaxValue, "the number of batches");
        var skew = SharedOptions.Number(
            new Option<double>("--skew", "-s") { Description = "Load skew, above 0: 1 is uniform; larger sends more tokens to low-numbered experts (id = floor(u^skew * E)).", DefaultValueFactory = _ => 2.0 },
            value => value > 0,
            "give the load skew, a number above 0 (1 is uniform)");
        var seed = SharedOptions.WholeNumber(
            new Option<int>("--seed") { Description = "Random seed, for repeatable runs.", DefaultValueFactory = _ => 1 }, int.MinValue, int.MaxValue, "a random seed");
        var recording = new SharedOptions.Recording(models: false);

        var command = new Command("simulate", "Route synthetic batches (k distinct experts per token, skewed load) on the chosen engine, then print the report.")
        {
            experts, topK, tokens, steps, skew, seed,
        };
        recording.AddTo(command);
        SharedOptions.DistinctFiles(command, inputs: null, recording.Outputs);
        command.SetAction(parse =>
        {
            if ((recording.Problem(parse) ?? EngineChoice.Problem()) is { } problem)
            {
                console.Error.WriteLine(problem);
                return ExitCodes.Usage;
            }

            var (e, k, t, n, s) = (parse.GetValue(experts), parse.GetValue(topK), parse.GetValue(tokens), parse.GetValue(steps), parse.GetValue(skew));
            if (Conflict(e, k, t) is { } conflict)
            {
                console.Error.WriteLine(conflict);
                return ExitCodes.Usage;
            }

            IdBuffer ids;
            try
            {
                ids = IdBuffer.Allocate(t * k);
            }
            catch (OutOfMemoryException)
            {
                console.Error.WriteLine($"--tokens {t} with --top-k {k}: not enough memory for a batch of {IdBuffer.Describe((long)t * k)}.");
                return ExitCodes.Usage;
            }

            using (ids)
            {
                var random = new Random(parse.GetValue(seed));
                var session = recording.Session(
                    parse,
                    console,
                    e,
                    $"simulate: {Counted.Of(n, "batch", "batches")} of {Counted.Of(t, "token")}, top-{k} of {Counted.Of(e, "expert")}, skew {SkewText(parse, skew)}",
                    "one RecordRouting call, which hands the batch's ids to the engine and counts them (a GPU may finish counting after it returns); drawing the random ids is not timed, nor the first batch, which loads the engine (JIT, kernels)");
                return session.Run(
                    n,
                    ids.Span,
                    (_, batch) =>
                    {
                        Fill(batch, random, e, k, s);
                        return t;
                    },
                    (stats, batch, tokens) => stats.RecordRouting(batch, tokens, k, loadBalanceLoss: (float)(1.0 + 0.1 * random.NextDouble()), routerZLoss: (float)(0.01 * random.NextDouble())));
            }
        });
        return command;
    }

    /// <summary>What the options allow alone but not together, naming them; null when they agree.</summary>
    internal static string? Conflict(int experts, int topK, int tokens) =>
        topK > experts ? $"--top-k {topK}: give at most --experts ({experts}) experts per token; each token goes to k distinct experts."
        : (long)tokens * topK > NpyIds.MaxIdsPerStep ? $"--tokens {tokens} with --top-k {topK}: {(long)tokens * topK:N0} ids per batch; give tokens x k of at most {NpyIds.MaxIdsPerStep:N0}."
        : null;

    /// <summary>The skew as the user wrote it (a rounded figure would show 1e-5 as 0, a value the option refuses), or the default's.</summary>
    private static string SkewText(ParseResult parse, Option<double> skew) =>
        parse.GetResult(skew) is { Implicit: false, Tokens: [var token] } ? token.Value : parse.GetValue(skew).ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>k distinct experts per token, drawn with the skewed distribution.</summary>
    private static void Fill(Span<int> ids, Random random, int experts, int topK, double skew)
    {
        Span<int> chosen = stackalloc int[topK];
        for (var token = 0; token < ids.Length / topK; token++)
        {
            for (var picked = 0; picked < topK; picked++)
            {
                var id = Draw(random, experts, skew);
                for (var draw = 1; chosen[..picked].Contains(id) && draw < DrawsPerPick; draw++)
                {
                    id = Draw(random, experts, skew);
                }

                while (chosen[..picked].Contains(id))
                {
                    id = (id + 1) % experts;
                }

                chosen[picked] = id;
            }

            chosen.CopyTo(ids.Slice(token * topK, topK));
        }
    }

    private static int Draw(Random random, int experts, double skew) =>
        Math.Min(experts - 1, (int)(Math.Pow(random.NextDouble(), skew) * experts));
}
