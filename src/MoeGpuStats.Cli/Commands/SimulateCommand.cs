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
            new Option<int>("--top-k", "-k") { Description = "Experts per token (k), 1 to E.", DefaultValueFactory = _ => 2 }, 1, maxExperts, "experts per token (at most --experts)");
        var tokens = SharedOptions.WholeNumber(
            new Option<int>("--tokens", "-t") { Description = $"Tokens per batch (with --layers, routed in every layer of a step); tokens x k, or layers x tokens x k, at most {NpyIds.MaxIdsPerStep:N0}.", DefaultValueFactory = _ => 4096 }, 1, int.MaxValue, "tokens per batch");
        var steps = SharedOptions.WholeNumber(
            new Option<int>("--steps", "-n") { Description = "Batches to route (with --layers, steps of the model), at least 1.", DefaultValueFactory = _ => 200 }, 1, int.MaxValue, "the number of batches (steps of a model)");
        var skew = SharedOptions.Number(
            new Option<double>("--skew", "-s") { Description = "Load skew, above 0: 1 is uniform; larger sends more tokens to low-numbered experts (id = floor(u^skew * E)).", DefaultValueFactory = _ => 2.0 },
            value => value > 0,
            "give the load skew, a number above 0 (1 is uniform)");
        var seed = SharedOptions.WholeNumber(
            new Option<int>("--seed") { Description = "Random seed of the routed tokens (not of a model's hot experts), for repeatable runs.", DefaultValueFactory = _ => 1 }, int.MinValue, int.MaxValue, "a random seed");
        var layers = SharedOptions.WholeNumber(
            new Option<int?>("--layers", "-l") { Description = $"Simulate a whole model of this many MoE layers, 1 to {ModelRoutingStatsOptions.MaxLayers:N0}: each step routes its tokens in every layer, each layer with hot experts of its own, recorded as one step of a model; the report is the model's, as replay gives for a trace with layers." },
            1,
            ModelRoutingStatsOptions.MaxLayers,
            "the number of layers");
        var recording = new SharedOptions.Recording(models: "--layers");
        var model = new ModelOptions("With --layers");

        var command = new Command("simulate", "Route synthetic batches (k distinct experts per token, skewed load) on the chosen engine, then print the report; with --layers, steps of a whole model.")
        {
            experts, topK, tokens, steps, skew, seed, layers,
        };
        model.AddTo(command);
        recording.AddTo(command);
        SharedOptions.DistinctFiles(command, inputs: null, [.. recording.Outputs, model.WindowLoad]);
        command.SetAction(parse =>
        {
            if ((recording.Problem(parse) ?? EngineChoice.Problem()) is { } problem)
            {
                console.Error.WriteLine(problem);
                return ExitCodes.Usage;
            }

            var (e, k, t, n, s, l) = (parse.GetValue(experts), parse.GetValue(topK), parse.GetValue(tokens), parse.GetValue(steps), parse.GetValue(skew), parse.GetValue(layers));
            if ((Conflict(e, k, t, l) ?? ModelProblem(parse, recording, model, l, e)) is { } conflict)
            {
                console.Error.WriteLine(conflict);
                return ExitCodes.Usage;
            }

            var idsPerStep = (l ?? 1) * t * k;
            IdBuffer ids;
            try
            {
                ids = IdBuffer.Allocate(idsPerStep);
            }
            catch (OutOfMemoryException)
            {
                console.Error.WriteLine(l is null
                    ? $"--tokens {t} with --top-k {k}: not enough memory for a batch of {IdBuffer.Describe(idsPerStep)}."
                    : $"--layers {l} with --tokens {t} and --top-k {k}: not enough memory for a step of {IdBuffer.Describe(idsPerStep)}.");
                return ExitCodes.Usage;
            }

            using (ids)
            {
                var random = new Random(parse.GetValue(seed));
                var shape = $"top-{k} of {Counted.Of(e, "expert")}, skew {SkewText(parse, skew)}";
                if (l is { } modelLayers)
                {
                    var hotExperts = HotExperts(modelLayers, e);
                    var window = model.WindowFor(parse, modelLayers, e, n);
                    var run = recording.Model(
                        parse,
                        console,
                        new ModelRoutingStatsOptions { Layers = modelLayers, Experts = e, Window = window.Steps },
                        window.Named,
                        parse.GetValue(model.WindowLoad),
                        parse.GetValue(model.EpSize),
                        parse.GetValue(model.LayersShown),
                        model.Metrics(parse),
                        $"simulate: {Counted.Of(n, "step")} of {Counted.Of(t, "token")} in {Counted.Of(modelLayers, "layer")}, {shape}",
                        "one RecordStep call, which hands every layer's ids to the engine and counts them (a GPU may finish counting after it returns); drawing the random ids is not timed, nor the first step, which loads the engine (JIT, kernels)");
                    return run.Run(
                        n,
                        ids.Span,
                        k,
                        (_, stepIds) =>
                        {
                            for (var layer = 0; layer < modelLayers; layer++)
                            {
                                var layerIds = stepIds.Slice(layer * t * k, t * k);
                                Fill(layerIds, random, e, k, s);
                                foreach (ref var id in layerIds)
                                {
                                    id = hotExperts[layer][id];
                                }
                            }

                            return t;
                        },
                        window.Notes);
                }

                var session = recording.Session(
                    parse,
                    console,
                    e,
                    $"simulate: {Counted.Of(n, "batch", "batches")} of {Counted.Of(t, "token")}, {shape}",
                    "one RecordRouting call, which hands the batch's ids to the engine and counts them (a GPU may finish counting after it returns); drawing the random ids is not timed, nor the first batch, which loads the engine (JIT, kernels)");
                return session.Run(
                    n,
                    ids.Span,
                    (_, batch) =>
                    {
                        Fill(batch, random, e, k, s);
                        return t;
                    },
                    (stats, batch, tokens) => stats.RecordRouting(batch, tokens, k));
            }
        });
        return command;
    }

    /// <summary>The seed of the simulated model's hot experts, the same for every <c>--seed</c> (any fixed value would do).</summary>
    private const int ModelSeed = 20;

    /// <summary>
    /// Each layer's experts in order of heat: the skewed draw's expert i is layer l's <c>[l][i]</c>, a
    /// shuffle of its own, so that layers differ in which experts are hot, as a real model's do. The shuffles
    /// are the model's, not the seed's: runs of different seeds are ranks of one model, whose snapshots merge into
    /// one job's load (as a single-layer run's hottest expert is 0 whatever the seed).
    /// </summary>
    private static int[][] HotExperts(int layers, int experts)
    {
        var random = new Random(ModelSeed);
        var order = new int[layers][];
        for (var layer = 0; layer < layers; layer++)
        {
            order[layer] = [.. Enumerable.Range(0, experts)];
            random.Shuffle(order[layer]);
        }

        return order;
    }

    /// <summary>
    /// Why the model's options cannot go as given, naming the option: one given without --layers, an
    /// --ep-size that does not divide the experts, a metrics option without --metrics-port, or metrics
    /// beyond the endpoint's series; null when they fit.
    /// </summary>
    private static string? ModelProblem(ParseResult parse, SharedOptions.Recording recording, ModelOptions model, int? layers, int experts)
    {
        if (layers is null)
        {
            return model.GivenForOneLayer(parse) is var (option, why) ? $"{option}: {why}; give --layers." : null;
        }

        if (model.EpSizeProblem(parse, experts) is { } ranks)
        {
            return ranks;
        }

        if (model.MetricsOption(parse) is { } metrics && recording.ModelMetricsProblem(parse, metrics) is { } withoutPort)
        {
            return withoutPort;
        }

        return parse.GetValue(recording.Port) is not null ? model.SeriesProblem(parse, layers.Value, experts) : null;
    }

    /// <summary>What the options allow alone but not together, naming them; null when they agree.</summary>
    private static string? Conflict(int experts, int topK, int tokens, int? layers) =>
        topK > experts ? $"--top-k {topK}: give at most --experts ({experts}) experts per token; each token goes to k distinct experts."
        : (long)tokens * topK > NpyIds.MaxIdsPerStep ? $"--tokens {tokens} with --top-k {topK}: {(long)tokens * topK:N0} ids per batch; give tokens x k of at most {NpyIds.MaxIdsPerStep:N0}."
        : (long)(layers ?? 1) * tokens * topK > NpyIds.MaxIdsPerStep ? $"--layers {layers} with --tokens {tokens} and --top-k {topK}: {(long)layers!.Value * tokens * topK:N0} ids per step; give layers x tokens x k of at most {NpyIds.MaxIdsPerStep:N0}."
        : null;

    /// <summary>The skew as the user wrote it (a rounded figure would show 1e-5 as 0, a value the option refuses), or the default's.</summary>
    private static string SkewText(ParseResult parse, Option<double> skew) =>
        parse.GetResult(skew) is { Implicit: false, Tokens: [var token] } ? token.Value : parse.GetValue(skew).ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// k distinct experts per token, drawn with the skewed distribution: an expert the token already has is drawn again,
    /// up to <see cref="DrawsPerPick"/> draws, then the next expert it has not (cyclically) is taken.
    /// </summary>
    internal static void Fill(Span<int> ids, Random random, int experts, int topK, double skew)
    {
        Span<int> chosen = stackalloc int[topK];

        // next[e] is e while the token has not expert e, else a link towards the next one it has not (experts: none
        // up to the end). Links are followed and shortened as in a disjoint-set forest, so that a token's picks cost
        // about k even where a steep skew draws the chosen experts again and again (a scan of them would cost k²).
        Span<int> next = stackalloc int[experts + 1];
        for (var e = 0; e <= experts; e++)
        {
            next[e] = e;
        }

        for (var token = 0; token < ids.Length / topK; token++)
        {
            for (var picked = 0; picked < topK; picked++)
            {
                var id = Draw(random, experts, skew);
                for (var draw = 1; next[id] != id && draw < DrawsPerPick; draw++)
                {
                    id = Draw(random, experts, skew);
                }

                id = NextFree(next, id);
                if (id == experts)
                {
                    id = NextFree(next, 0);
                }

                chosen[picked] = id;
                next[id] = id + 1;
            }

            chosen.CopyTo(ids.Slice(token * topK, topK));

            // Only the chosen experts' links were written (a shortened path runs through chosen experts alone).
            foreach (var id in chosen)
            {
                next[id] = id;
            }
        }
    }

    /// <summary>The first expert from <paramref name="id"/> on that the token has not, or the experts' count where none is; shortens the path it followed.</summary>
    private static int NextFree(Span<int> next, int id)
    {
        var free = id;
        while (next[free] != free)
        {
            free = next[free];
        }

        while (id != free)
        {
            var link = next[id];
            next[id] = free;
            id = link;
        }

        return free;
    }

    private static int Draw(Random random, int experts, double skew) =>
        Math.Min(experts - 1, (int)(Math.Pow(random.NextDouble(), skew) * experts));
}
