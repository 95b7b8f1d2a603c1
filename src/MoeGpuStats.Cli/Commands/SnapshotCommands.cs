using System.CommandLine;
using System.Security.Cryptography;
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
        var layersShown = ModelOptions.LayersShownOption("For a model's snapshot");
        var command = new Command("report", "Print the report of a saved snapshot (and plot it).") { file, json, plot, epSize, layersShown };
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
                if (ModelOnlyProblem(parse.GetValue(epSize), parse.GetValue(layersShown), snapshot.Model, $"{path} holds one layer") is { } problem)
                {
                    console.Error.WriteLine(problem);
                    return ExitCodes.Usage;
                }

                return snapshot.Model is { } model
                    ? FinishModel(console, model, parse.GetValue(json), parse.GetValue(plot), save: null, $"report {path}: {snapshot.Describe()}", parse.GetValue(epSize), parse.GetValue(layersShown))
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
        var layersShown = ModelOptions.LayersShownOption("For models' snapshots");
        var command = new Command("merge", "Combine snapshots: counts and totals exactly, utilization and loss averages weighted by batches (see docs/scaling.md for what merges approximately).")
        {
            files, output, json, plot, epSize, layersShown,
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

            var merge = new SnapshotMerge(paths);
            foreach (var path in paths)
            {
                if (!TryLoad(console, path, out var snapshot))
                {
                    return ExitCodes.BadInput;
                }

                using (snapshot)
                {
                    // Checked at the first snapshot, before the others are read: the option does not fit what they hold.
                    if (path == paths[0] && ModelOnlyProblem(parse.GetValue(epSize), parse.GetValue(layersShown), snapshot.Model, "the snapshots given hold one layer each") is { } problem)
                    {
                        console.Error.WriteLine(problem);
                        return ExitCodes.Usage;
                    }

                    if (merge.Add(snapshot) is { } refused)
                    {
                        console.Error.WriteLine(refused);
                        return ExitCodes.BadInput;
                    }
                }
            }

            if (paths.Length == 1)
            {
                // A glob of ranks' files that matched one (the others not yet written, or named otherwise).
                console.Error.WriteLine($"warning: one snapshot given ({UnsafeText.Escaped(paths[0].ToString())}): the merge is that snapshot alone; give every rank's.");
            }

            foreach (var identical in Identical(paths))
            {
                console.Error.WriteLine(identical);
            }

            foreach (var note in (string?[])[merge.StepsNote, merge.TopKNote, merge.MergeGivenNote])
            {
                if (note is not null)
                {
                    console.Error.WriteLine(note);
                }
            }

            Snapshot merged;
            try
            {
                merged = merge.Result();
            }
            catch (ArgumentException exception)
            {
                console.Error.WriteLine(merge.Refused(exception));
                return ExitCodes.BadInput;
            }

            using (merged)
            {
                var (asJson, picture, file) = (parse.GetValue(json), parse.GetValue(plot), parse.GetValue(output));
                // The report counts the snapshots inside merges given too ("summed over 4 merged snapshots"): the heading says how.
                var inside = merge.Merged != paths.Length ? $" ({merge.Merged:N0} with those merged in them)" : "";
                return merged.Model is { } model
                    ? FinishModel(
                        console, model, asJson, picture, file, $"merge of {Counted.Of(paths.Length, "model snapshot")}{inside}: {Counted.Of(model.Layers, "layer")} of {Counted.Of(model.Experts, "expert")}, the ranks' steps summed", parse.GetValue(epSize), parse.GetValue(layersShown))
                    : RecordingSession.Finish(
                        console, merged.Layer!, asJson, picture, file, $"merge of {Counted.Of(paths.Length, "snapshot")}{inside}: one layer of {Counted.Of(Snapshot.Experts(merged.Layer!), "expert")}", engine: null, "as the programs that saved the snapshots timed it", "--output");
            }
        });
        return command;
    }

    /// <summary>
    /// Why a model's option cannot apply: <c>--ep-size</c> or <c>--layers-shown</c> given for snapshots of one layer
    /// (<paramref name="oneLayer"/> says so), or ranks that do not divide the model's experts; null when they can or were not given.
    /// </summary>
    private static string? ModelOnlyProblem(int? ranks, int? layersShown, ModelRoutingStats? model, string oneLayer) =>
        model is null && ranks is { } n ? $"--ep-size {n}: the balance over expert-parallel ranks is a model's, across its layers; {oneLayer}."
        : model is null && layersShown is { } shown ? $"--layers-shown {shown}: the report's list of layers is a model's; {oneLayer}."
        : model is not null && ranks is { } r ? EpBalance.Problem(r, model.Experts)
        : null;

    /// <summary>
    /// A model's ending: the report (or JSON), with the balance over <paramref name="epSize"/> ranks where
    /// given and <paramref name="layersShown"/> layers listed, then the plot (a heat map without a time axis) and the file.
    /// </summary>
    private static int FinishModel(CliConsole console, ModelRoutingStats model, bool json, FileInfo? plot, FileInfo? save, string heading, int? epSize, int? layersShown)
    {
        var summary = model.Summary();
        var ranks = epSize is { } n ? EpBalance.Of(model, n) : null;
        if (json)
        {
            ModelReport.WriteJson(console.Out, summary, ModelCounts.Of(model), model.Experts, ranks: ranks);
        }
        else
        {
            ModelReport.Print(console.Out, summary, ModelCounts.Of(model), heading, engine: null, ranks: ranks, shown: layersShown ?? ModelReport.ShownLayers);
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
                return $"{UnsafeText.Escaped(given)}: {(earlier == given ? "given twice" : $"the same file as {UnsafeText.Escaped(earlier)}")}; give each rank's snapshot once.";
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

                same.Add(UnsafeText.Escaped(path.ToString()));
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
