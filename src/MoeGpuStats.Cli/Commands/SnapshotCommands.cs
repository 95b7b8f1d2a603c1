using System.CommandLine;
using System.Security.Cryptography;
using System.Text.Json;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>report</c> and <c>merge</c>: commands over snapshot files.</summary>
internal static class SnapshotCommands
{
    public static Command Report(CliConsole console)
    {
        var file = new Argument<FileInfo>("SNAPSHOT.json") { CustomParser = result => SharedOptions.ParseFile(result, "SNAPSHOT.json")!, Description = "A snapshot saved with --save (or the seed's serde JSON): one layer's, or a whole model's from a replay with a layers axis." };
        var json = SharedOptions.Json("a layer's snapshot, in the seed-compatible shape; a model's balance per layer and counts");
        var plot = SharedOptions.Plot("for one layer, each expert's share of tokens with the mean marked and the load variance per batch; for a model, a layers x experts heat map of load share");
        var epSize = ModelOptions.EpSizeOption("For a model's snapshot: also report the balance");
        var command = new Command("report", "Print the report of a saved snapshot (and plot it).") { file, json, plot, epSize };
        SharedOptions.DistinctFiles(command, file, plot);
        command.SetAction(parse =>
        {
            var path = parse.GetValue(file)!;
            if (!TryLoad(console, path, out var snapshot))
            {
                return ExitCodes.BadInput;
            }

            using (snapshot)
            {
                if (EpSizeProblem(parse.GetValue(epSize), snapshot.Model, $"{path} holds one layer") is { } problem)
                {
                    console.Error.WriteLine(problem);
                    return ExitCodes.Usage;
                }

                return snapshot.Model is { } model
                    ? FinishModel(console, model, parse.GetValue(json), parse.GetValue(plot), save: null, $"report {path}: {snapshot.Describe()}", parse.GetValue(epSize))
                    : RecordingSession.Finish(console, snapshot.Layer!, parse.GetValue(json), parse.GetValue(plot), save: null, $"report {path}: {snapshot.Describe()}", engine: null, "as the program that saved the snapshot timed it");
            }
        });
        return command;
    }

    public static Command Merge(CliConsole console)
    {
        var files = new Argument<FileInfo[]>("SNAPSHOTS") { CustomParser = result => SharedOptions.ParseFiles(result, "SNAPSHOTS"), Description = "Snapshots of ranks or replicas that route to the same experts: all of one layer, or all of whole models of the same shape.", Arity = ArgumentArity.OneOrMore };
        var output = SharedOptions.OutputFile(new Option<FileInfo?>("--output", "-o") { CustomParser = result => SharedOptions.ParseFile(result, "--output"), Description = "Where to write the merged snapshot; without it, merge prints the merged report (or its --json) and writes nothing." }, SnapshotFile.NameProblem);
        var json = SharedOptions.Json("the merged layer's snapshot, in the seed-compatible shape; for models, the merged model's balance per layer and counts (-o writes the merged snapshot). Standard error names the files written");
        var plot = SharedOptions.Plot("the merged statistics: for one layer, each expert's share of tokens with the mean marked and the load variance per batch; for models, a layers x experts heat map of load share");
        var epSize = ModelOptions.EpSizeOption("For models' snapshots: also report the merged model's balance");
        var command = new Command("merge", "Combine snapshots: counts and totals exactly, utilization and loss averages weighted by batches (see docs/scaling.md for what merges approximately).")
        {
            files, output, json, plot, epSize,
        };
        SharedOptions.DistinctFiles(command, files, output, plot);
        command.SetAction(parse =>
        {
            var paths = parse.GetValue(files)!;
            if (Repeated(paths) is { } repeated)
            {
                console.Error.WriteLine(repeated);
                return ExitCodes.Usage;
            }

            var parts = new List<Snapshot>();
            try
            {
                foreach (var path in paths)
                {
                    if (!TryLoad(console, path, out var snapshot))
                    {
                        return ExitCodes.BadInput;
                    }

                    parts.Add(snapshot);
                }

                if ((KindMismatch(paths, parts) ?? (parts[0].Model is null ? Mismatch(paths, [.. parts.Select(p => p.Layer!)]) : ModelMismatch(paths, [.. parts.Select(p => p.Model!)]))) is { } mismatch)
                {
                    console.Error.WriteLine(mismatch);
                    return ExitCodes.BadInput;
                }

                if (EpSizeProblem(parse.GetValue(epSize), parts[0].Model, "the snapshots given hold one layer each") is { } problem)
                {
                    console.Error.WriteLine(problem);
                    return ExitCodes.Usage;
                }

                if (paths.Length == 1)
                {
                    // A glob of ranks' files that matched one (the others not yet written, or named otherwise).
                    console.Error.WriteLine($"warning: one snapshot given ({ErrorText.OneLine(paths[0].ToString())}): the merge is that snapshot alone; give every rank's.");
                }

                foreach (var identical in Identical(paths))
                {
                    console.Error.WriteLine(identical);
                }

                if (parts[0].Model is not null && StepsDiffer(paths, [.. parts.Select(p => p.Model!)]) is { } steps)
                {
                    console.Error.WriteLine(steps);
                }

                var (asJson, picture, file) = (parse.GetValue(json), parse.GetValue(plot), parse.GetValue(output));
                return parts[0].Model is null
                    ? Merge(console, paths, [.. parts.Select(p => p.Layer!)], RoutingStats.Merge, merged => RecordingSession.Finish(
                        console, merged, asJson, picture, file, $"merge of {Counted.Of(parts.Count, "snapshot")}: one layer of {Counted.Of(Snapshot.Experts(merged), "expert")}", engine: null, "as the programs that saved the snapshots timed it", "--output"))
                    : Merge(console, paths, [.. parts.Select(p => p.Model!)], ModelRoutingStats.Merge, merged => FinishModel(
                        console, merged, asJson, picture, file, $"merge of {Counted.Of(parts.Count, "model snapshot")}: {Counted.Of(merged.Layers, "layer")} of {Counted.Of(merged.Experts, "expert")}, the ranks' steps summed", parse.GetValue(epSize)));
            }
            finally
            {
                parts.ForEach(p => p.Dispose());
            }
        });
        return command;
    }

    /// <summary>Merges <paramref name="parts"/> and ends with <paramref name="finish"/>; parts that do not merge are one line naming the files.</summary>
    private static int Merge<T>(CliConsole console, FileInfo[] paths, List<T> parts, Func<IEnumerable<T>, T> merge, Func<T, int> finish)
        where T : IDisposable
    {
        T merged;
        try
        {
            merged = merge(parts);
        }
        catch (ArgumentException exception)
        {
            console.Error.WriteLine($"cannot merge {string.Join(", ", paths.Select(p => p.ToString()))}: {ErrorText.Of(exception)}");
            return ExitCodes.BadInput;
        }

        using (merged)
        {
            return finish(merged);
        }
    }

    /// <summary>Why <c>--ep-size</c> cannot apply: snapshots of one layer (<paramref name="oneLayer"/> says so), or ranks that do not divide the model's experts; null when it can or was not given.</summary>
    private static string? EpSizeProblem(int? ranks, ModelRoutingStats? model, string oneLayer) =>
        ranks is not { } n ? null
        : model is null ? $"--ep-size {n}: the balance over expert-parallel ranks is a model's, across its layers; {oneLayer}."
        : EpBalance.Problem(n, model.Experts);

    /// <summary>
    /// A model's ending: the report (or JSON), with the balance over <paramref name="epSize"/> ranks where
    /// given, then the plot (a heat map without a time axis) and the file.
    /// </summary>
    private static int FinishModel(CliConsole console, ModelRoutingStats model, bool json, FileInfo? plot, FileInfo? save, string heading, int? epSize)
    {
        var summary = model.Summary();
        var ranks = epSize is { } n ? EpBalance.Of(model, n) : null;
        if (json)
        {
            ModelReport.WriteJson(console.Out, summary, ModelCounts.Of(model), model.Experts, ranks: ranks);
        }
        else
        {
            ModelReport.Print(console.Out, summary, ModelCounts.Of(model), heading, engine: null, ranks: ranks);
        }

        return new OutputFiles(console)
            .Add("--plot", plot, "plot", full => ModelLoadPlot.Save(model, timeline: null, full))
            .Add("--output", save, "snapshot", full => SnapshotFile.Save(model, full))
            .WriteAll();
    }

    /// <summary>A snapshot named twice, or under two names of one file (through a symbolic or hard link): a rank merged twice would count twice.</summary>
    private static string? Repeated(FileInfo[] paths)
    {
        var seen = new Dictionary<string, string>();
        foreach (var path in paths)
        {
            var given = path.ToString();
            var file = FileIdentity.OfInputData(given);
            if (!seen.TryAdd(file, given))
            {
                var earlier = seen[file];
                return $"{ErrorText.OneLine(given)}: {(earlier == given ? "given twice" : $"the same file as {ErrorText.OneLine(earlier)}")}; give each rank's snapshot once.";
            }
        }

        return null;
    }

    /// <summary>
    /// A warning for each set of snapshots that hold the same bytes: copies, or hard links (which no path
    /// resolution shows), of one rank's file. Two ranks never save the same bytes (their routing, latencies
    /// and losses differ), but a merge of them is still well defined, so it goes on.
    /// </summary>
    private static IEnumerable<string> Identical(FileInfo[] paths)
    {
        var byHash = new Dictionary<string, List<string>>();
        try
        {
            foreach (var path in paths)
            {
                using var stream = File.OpenRead(path.FullName);
                var hash = Convert.ToHexString(SHA256.HashData(stream));
                if (!byHash.TryGetValue(hash, out var same))
                {
                    byHash[hash] = same = [];
                }

                same.Add(ErrorText.OneLine(path.ToString()));
            }
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            // Every file was just read whole: one that went since only loses this warning.
            return [];
        }

        return byHash.Values.Where(same => same.Count > 1).Select(same => same.Count == 2
            ? $"warning: {same[1]} holds the same bytes as {same[0]} (a copy?); if it is the same rank, the merge counts it twice."
            : $"warning: {Listed(same[1..])} hold the same bytes as {same[0]} (copies?); if they are the same rank, the merge counts it {same.Count:N0} times.");
    }

    /// <summary>Names a few files, and how many more: <c>a, b, c and 46 more</c>.</summary>
    private static string Listed(List<string> names) =>
        names.Count <= 3 ? $"{string.Join(", ", names[..^1])} and {names[^1]}" : $"{string.Join(", ", names[..3])} and {names.Count - 3:N0} more";

    /// <summary>
    /// A note where the models hold different step counts: a merge takes its parts as ranks of one job that
    /// step together and aligns their windows from the newest step, which is not a span of time for parts
    /// that did not (one rank's snapshots at two times, say).
    /// </summary>
    private static string? StepsDiffer(FileInfo[] paths, List<ModelRoutingStats> models)
    {
        var steps = models.Select(model => model.Summary().Steps).ToArray();
        var other = Array.FindIndex(steps, s => s != steps[0]);
        return other < 0
            ? null
            : $"note: {ErrorText.OneLine(paths[0].ToString())} holds {Counted.Of(steps[0], "step")}, {ErrorText.OneLine(paths[other].ToString())} {Counted.Of(steps[other], "step")}: merge takes the snapshots as ranks of one job, sums each one's own last window of steps from its newest, and counts every step of each; snapshots of one rank at two times are not ranks (docs/scaling.md).";
    }

    /// <summary>Why the snapshots cannot merge because some hold one layer and others a whole model, naming the first of each.</summary>
    private static string? KindMismatch(FileInfo[] paths, List<Snapshot> parts)
    {
        var other = parts.FindIndex(p => (p.Model is null) != (parts[0].Model is null));
        return other < 0 ? null : $"{paths[0]} holds {parts[0].Describe()}, {paths[other]} holds {parts[other].Describe()}; merge layers with layers and models with models.";
    }

    /// <summary>Why the models cannot merge, naming the files: they must have the same layers, experts, window, capacity and empty-step rule.</summary>
    private static string? ModelMismatch(FileInfo[] paths, List<ModelRoutingStats> parts)
    {
        var other = parts.FindIndex(p => Shape(p) != Shape(parts[0]));
        return other < 0 ? null
            : $"{paths[0]} holds {Shape(parts[0])}, {paths[other]} holds {Shape(parts[other])}; only models of the same layers, experts, window, capacity and --skip-empty-steps merge"
            + (parts[other].Experts != parts[0].Experts ? $"{GuessedExperts}." : ".");

        static string Shape(ModelRoutingStats model) =>
            $"{Counted.Of(model.Layers, "layer")} of {Counted.Of(model.Experts, "expert")} with a window of {Counted.Of(model.Options.Window, "step")} and "
            + (model.Options.ExpertCapacity is { } capacity ? $"a capacity of {Counted.Of(capacity, "slot")} per expert" : "no capacity")
            + (model.Options.SkipEmptySteps ? ", empty steps left out (--skip-empty-steps)" : "");
    }

    /// <summary>Why ranks' experts can differ: a replay without <c>--experts</c> takes them from the largest id of its own trace.</summary>
    private const string GuessedExperts = " (a replay without --experts counts experts up to the largest id in its trace, which differs by rank: replay each rank with --experts)";

    /// <summary>Why the snapshots cannot merge, naming the files: they must count the same experts with the same capacity.</summary>
    private static string? Mismatch(FileInfo[] paths, List<RoutingStats> parts)
    {
        var first = -1;
        for (var i = 0; i < parts.Count; i++)
        {
            var experts = parts[i].ExpertUtilization.Count;
            if (experts == 0)
            {
                continue;
            }

            if (first < 0)
            {
                first = i;
            }
            else if (experts != parts[first].ExpertUtilization.Count)
            {
                return $"{paths[first]} has {parts[first].ExpertUtilization.Count:N0} experts, {paths[i]} has {experts:N0}; only snapshots of the same experts merge{GuessedExperts}.";
            }
        }

        for (var i = 1; i < parts.Count; i++)
        {
            if (parts[i].CapacityStats.SlotsPerExpert != parts[0].CapacityStats.SlotsPerExpert)
            {
                return $"{paths[0]} has {Capacity(parts[0])}, {paths[i]} has {Capacity(parts[i])}; only snapshots of the same capacity merge.";
            }
        }

        return null;
    }

    private static string Capacity(RoutingStats stats) =>
        stats.Options.ExpertCapacity is { } slots ? $"a capacity of {slots:N0} slots per expert" : "no capacity (the seed's placeholder of 100 slots per expert)";

    private static bool TryLoad(CliConsole console, FileInfo path, out Snapshot snapshot)
    {
        // A model's snapshot holds its window's every count: hundreds of MB parse for seconds. A larger file than a
        // snapshot can be is refused by its length, unread.
        if (path.Exists && path.Length <= RoutingStatsFile.MaxFileBytes)
        {
            InputFile.LongReadNote(console, path)(128L << 20, "as a snapshot (seconds of parsing)");
        }

        return InputFile.TryRead(console, path, "a snapshot file", SnapshotFile.Load, out snapshot);
    }
}
