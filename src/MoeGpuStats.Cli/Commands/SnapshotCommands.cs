using System.CommandLine;
using System.Text.Json;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>report</c> and <c>merge</c>: commands over snapshot files.</summary>
internal static class SnapshotCommands
{
    public static Command Report(CliConsole console)
    {
        var file = new Argument<FileInfo>("SNAPSHOT.json") { Description = "A snapshot saved with --save (or the seed's serde JSON)." };
        var json = SharedOptions.Json();
        var plot = SharedOptions.Plot();
        var command = new Command("report", "Print the report of a saved snapshot (and plot it).") { file, json, plot };
        command.SetAction(parse =>
        {
            var path = parse.GetValue(file)!;
            if (!TryLoad(console, path, out var stats))
            {
                return ExitCodes.BadInput;
            }

            using (stats)
            {
                return RecordingSession.Finish(console, stats, parse.GetValue(json), parse.GetValue(plot), save: null, $"report {path}", engine: null, "as the program that saved the snapshot timed it");
            }
        });
        return command;
    }

    public static Command Merge(CliConsole console)
    {
        var files = new Argument<FileInfo[]>("SNAPSHOTS") { Description = "Snapshots of ranks or replicas that route to the same experts.", Arity = ArgumentArity.OneOrMore };
        var output = SharedOptions.OutputFile(new Option<FileInfo>("--output", "-o") { Description = "Where to write the merged snapshot.", Required = true });
        var json = SharedOptions.Json();
        var plot = SharedOptions.Plot();
        var command = new Command("merge", "Combine snapshots: counts and totals exactly, utilization and loss averages weighted by batches (see docs/scaling.md for what merges approximately).")
        {
            files, output, json, plot,
        };
        command.SetAction(parse =>
        {
            var paths = parse.GetValue(files)!;
            var parts = new List<RoutingStats>();
            try
            {
                foreach (var path in paths)
                {
                    if (!TryLoad(console, path, out var stats))
                    {
                        return ExitCodes.BadInput;
                    }

                    parts.Add(stats);
                }

                if (Mismatch(paths, parts) is { } mismatch)
                {
                    console.Error.WriteLine(mismatch);
                    return ExitCodes.BadInput;
                }

                RoutingStats merged;
                try
                {
                    merged = RoutingStats.Merge(parts);
                }
                catch (ArgumentException exception)
                {
                    console.Error.WriteLine($"cannot merge {string.Join(", ", paths.Select(p => p.ToString()))}: {ErrorText.Of(exception)}");
                    return ExitCodes.BadInput;
                }

                using (merged)
                {
                    return RecordingSession.Finish(
                        console, merged, parse.GetValue(json), parse.GetValue(plot), parse.GetValue(output), $"merge of {parts.Count} snapshots", engine: null, "as the programs that saved the snapshots timed it", "--output");
                }
            }
            finally
            {
                parts.ForEach(p => p.Dispose());
            }
        });
        return command;
    }

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
                return $"{paths[first]} has {parts[first].ExpertUtilization.Count:N0} experts, {paths[i]} has {experts:N0}; only snapshots of the same experts merge.";
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

    private static bool TryLoad(CliConsole console, FileInfo path, out RoutingStats stats) =>
        InputFile.TryRead(console, path, "a snapshot file", SnapshotFile.Load, out stats);
}
