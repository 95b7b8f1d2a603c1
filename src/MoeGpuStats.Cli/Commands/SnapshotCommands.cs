using System.CommandLine;
using System.Text.Json;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>report</c> and <c>merge</c>: commands over snapshot files.</summary>
internal static class SnapshotCommands
{
    public static Command Report()
    {
        var file = new Argument<FileInfo>("SNAPSHOT.json") { Description = "A snapshot saved with --save (or the seed's serde JSON)." };
        var json = SharedOptions.Json();
        var plot = SharedOptions.Plot();
        var command = new Command("report", "Print the summary of a saved snapshot (and plot it).") { file, json, plot };
        command.SetAction(parse =>
        {
            var path = parse.GetValue(file)!;
            if (!TryLoad(path, out var stats))
            {
                return ExitCodes.BadInput;
            }

            using (stats)
            {
                return RecordingSession.Finish(stats, parse.GetValue(json), parse.GetValue(plot), save: null, $"report {path.Name}");
            }
        });
        return command;
    }

    public static Command Merge()
    {
        var files = new Argument<FileInfo[]>("SNAPSHOTS") { Description = "Snapshots of ranks or replicas that route to the same experts.", Arity = ArgumentArity.OneOrMore };
        var output = new Option<FileInfo>("--output", "-o") { Description = "Where to write the merged snapshot.", Required = true };
        var json = SharedOptions.Json();
        var plot = SharedOptions.Plot();
        var command = new Command("merge", "Combine snapshots: counts and totals exactly, utilization and loss averages weighted by batches (see docs/scaling.md for what merges approximately).")
        {
            files, output, json, plot,
        };
        command.SetAction(parse =>
        {
            var parts = new List<RoutingStats>();
            try
            {
                foreach (var path in parse.GetValue(files)!)
                {
                    if (!TryLoad(path, out var stats))
                    {
                        return ExitCodes.BadInput;
                    }

                    parts.Add(stats);
                }

                RoutingStats merged;
                try
                {
                    merged = RoutingStats.Merge(parts);
                }
                catch (ArgumentException exception)
                {
                    Console.Error.WriteLine(exception.Message);
                    return ExitCodes.BadInput;
                }

                using (merged)
                {
                    return RecordingSession.Finish(merged, parse.GetValue(json), parse.GetValue(plot), parse.GetValue(output), $"merge of {parts.Count} snapshots");
                }
            }
            finally
            {
                parts.ForEach(p => p.Dispose());
            }
        });
        return command;
    }

    private static bool TryLoad(FileInfo path, out RoutingStats stats)
    {
        try
        {
            stats = RoutingStatsFile.Load(path.FullName);
            return true;
        }
        catch (Exception exception) when (exception is IOException or InvalidDataException or UnauthorizedAccessException or JsonException)
        {
            Console.Error.WriteLine(exception is FileNotFoundException ? $"{path.FullName}: no such file." : exception.Message);
            stats = null!;
            return false;
        }
    }
}
