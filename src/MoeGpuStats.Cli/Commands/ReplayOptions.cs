using System.CommandLine;
using System.CommandLine.Parsing;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// The argument and options of <c>replay</c>: how the trace file is read, which of its steps are replayed, and the
/// recording and model options it shares with <c>simulate</c>.
/// </summary>
internal sealed class ReplayOptions
{
    public Argument<FileInfo> File { get; } = new("FILE")
    {
        CustomParser = result => SharedOptions.ParseFile(result, "FILE")!,
        Description = $"The router's top-k ids, at most {NpyIds.MaxIdsPerStep:N0} a step; -1 marks an empty slot. A .npy file (np.save: int8, uint8, int16, uint16, int32, int64 or uint64, in one of the --layout orders); an .npz archive (np.savez or np.savez_compressed: members in the archive's order, see --members); or JSON lines (.jsonl, .ndjson), one object a line: topk_ids (one token's k ids, or a forward pass's [tokens][k]); layer (none in one layer's trace); optionally the pass's id, step, or the index of the line's first token in its pass, position (a pass starts where it is 0 again); without either, a pass ends where a layer comes again. Every layer of a pass routes the same tokens. request_id and gate_weights are checked, not used; other fields are ignored. Spellings: {JsonTraceLine.Spellings}. A .npy or zip magic in the first bytes decides over the name, as np.load reads a file.",
    };

    public Option<IdLayout?> Layout { get; } = new("--layout")
    {
        Description = $"The axes of a .npy file, or of each .npz member: {string.Join(", ", IdLayout.All)}. Default: tokens,k for 2-D, steps,layers,tokens,k for 4-D; a 3-D file must say which of steps,tokens,k, layers,tokens,k and tokens,layers,k it holds (with --members layers, 3-D is steps,tokens,k).",
        CustomParser = ParseLayout,
    };

    public Option<NpzMembers?> Members { get; } = new("--members")
    {
        HelpName = "steps|layers",
        Description = "What each member of an .npz archive holds: steps (the default: forward passes, each member read as a .npy file with --layout, one pass per member without a steps axis, the members' passes one after another, tokens free to differ) or layers (member l is layer l: [steps, tokens, k], or [tokens, k] for one step, every member of one shape).",
        CustomParser = ParseMembers,
    };

    public Option<int?> Experts { get; } = SharedOptions.WholeNumber(
        new Option<int?>("--experts", "-e") { Description = $"Experts (E), 1 to {RoutingStatsOptions.MaxDeviceExperts:N0}; default: the largest id in the file plus one. Ids outside [0, E) other than -1 are counted as invalid." },
        1,
        RoutingStatsOptions.MaxDeviceExperts,
        "the number of experts");

    public Option<int> SkipSteps { get; } = SharedOptions.WholeNumber(
        new Option<int>("--skip-steps") { Description = "Leave out the first N steps: a server's warm-up and profiling passes of synthetic tokens." },
        0,
        int.MaxValue,
        "the steps to leave out");

    public Option<bool> SkipEmptySteps { get; } = new("--skip-empty-steps")
    {
        Description = "With layers: leave out the steps in which no layer holds a token (padding alone, -1: an idle rank's dummy pass), as vLLM leaves its dummy passes out of its load window; they then take no place in --window, count in no statistic and are not timed. By default each is a step of no load.",
    };

    public SharedOptions.Recording Recording { get; } = new(models: "a trace with layers");

    public ModelOptions Model { get; } = new("With layers");

    /// <summary>The <c>replay</c> command with the argument and options, in the order its help lists them; no action yet.</summary>
    public Command CreateCommand()
    {
        var command = new Command("replay", "Record a router's saved top-k ids step by step on the chosen engine (best accelerator by default), then report.")
        {
            File, Layout, Members, Experts, SkipSteps, SkipEmptySteps,
        };
        Model.AddTo(command);
        Recording.AddTo(command);
        SharedOptions.DistinctFiles(command, File, [.. Recording.Outputs, Model.WindowLoad]);
        return command;
    }

    private static IdLayout? ParseLayout(ArgumentResult result)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (IdLayout.Parse(text) is { } parsed)
        {
            return parsed;
        }

        result.AddError(IdLayout.Unknown(text));
        return null;
    }

    private static NpzMembers? ParseMembers(ArgumentResult result)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        switch (text.Trim().ToLowerInvariant())
        {
            case "steps":
                return NpzMembers.Steps;
            case "layers":
                return NpzMembers.Layers;
        }

        result.AddError($"--members {SharedOptions.Given(text)}: give steps (each member holds forward passes) or layers (member l holds layer l).");
        return null;
    }
}
