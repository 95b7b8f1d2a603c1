using System.CommandLine;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>replay FILE.npy</c>: a router's saved top-k ids, recorded step by step on the chosen engine.</summary>
internal static class ReplayCommand
{
    public static Command Create()
    {
        var file = new Argument<FileInfo>("FILE.npy") { Description = "Top-k expert ids saved with np.save: int32 or int64, shaped [steps, tokens, k] or [tokens, k]." };
        var experts = new Option<int?>("--experts", "-e") { Description = "Experts (E); default: the largest id in the file plus one. Ids outside [0, E) are counted as invalid." };
        var recording = new SharedOptions.Recording();
        var command = new Command("replay", "Record a router's saved top-k ids step by step on the chosen engine (best accelerator by default), then report.")
        {
            file, experts,
        };
        recording.AddTo(command);
        command.SetAction(parse =>
        {
            var path = parse.GetValue(file)!;
            NpyIds npy;
            try
            {
                npy = NpyIds.Open(path.FullName);
            }
            catch (Exception exception) when (exception is IOException or InvalidDataException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine(exception is FileNotFoundException ? $"{path.FullName}: no such file." : exception.Message);
                return ExitCodes.BadInput;
            }

            using (npy)
            {
                var e = parse.GetValue(experts) ?? npy.MaxId() + 1;
                if (e < 1 || e > RoutingStatsOptions.MaxDeviceExperts)
                {
                    Console.Error.WriteLine($"{path.FullName}: E = {e}; give --experts between 1 and {RoutingStatsOptions.MaxDeviceExperts} (the file's ids imply {npy.MaxId() + 1}).");
                    return ExitCodes.Usage;
                }

                var ids = new int[npy.Tokens * npy.TopK];
                var session = recording.Session(parse, e, $"replay {path.Name}: {npy.Steps} steps of {npy.Tokens} tokens, top-{npy.TopK} of {e} experts ({npy.DType})");
                return session.Run(npy.Steps, (stats, step) =>
                {
                    npy.ReadStep(step, ids);
                    stats.RecordRouting(ids, npy.Tokens, npy.TopK);
                });
            }
        });
        return command;
    }
}
