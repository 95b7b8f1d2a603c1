using System.CommandLine;

namespace MoeGpuStats.Cli.Commands;

/// <summary>The argument and options of <c>plan</c>, and the values a command line gives them.</summary>
internal sealed class PlanOptions
{
    public Argument<FileInfo> Load { get; } = new("LOAD")
    {
        CustomParser = result => SharedOptions.ParseFile(result, "LOAD")!,
        Description = "Expert loads [layers, experts]: a .npy (int8, uint8, int16, uint16, int32, int64 or uint64 as a model's window_load() in Python; 2-D, or 1-D for one layer), a JSON array of arrays of whole numbers, or a snapshot saved with --save (a whole model: its window load; one layer: its tokens per expert).",
    };

    public Option<int> Replicas { get; } = SharedOptions.WholeNumber(
        new Option<int>("--replicas") { Description = "Physical expert slots per layer (R): at least the experts, a multiple of --gpus.", Required = true }, 1, PlanCommand.MaxSlotsPerLayer, "the physical experts per layer");

    public Option<int> Groups { get; } = SharedOptions.WholeNumber(
        new Option<int>("--groups") { Description = "Expert groups (G), dividing the experts; 1 when the model has none.", DefaultValueFactory = _ => 1 }, 1, PlanCommand.MaxSlotsPerLayer, "the number of expert groups");

    public Option<int> Nodes { get; } = SharedOptions.WholeNumber(
        new Option<int>("--nodes") { Description = "Server nodes (N), dividing --gpus. Hierarchical placement when N divides G, global otherwise.", DefaultValueFactory = _ => 1 }, 1, PlanCommand.MaxSlotsPerLayer, "the number of nodes");

    public Option<int> Gpus { get; } = SharedOptions.WholeNumber(
        new Option<int>("--gpus") { Description = "GPUs in all (P), dividing --replicas.", Required = true }, 1, PlanCommand.MaxSlotsPerLayer, "the number of GPUs");

    public Option<FileInfo?> Current { get; } = new("--current")
    {
        CustomParser = result => SharedOptions.ParseFile(result, "--current"),
        Description = "The placement serving now, for the balancedness before: the JSON plan --json wrote (its physical_to_logical and gpus), or a [layers][slots] JSON array of each slot's expert (vLLM's physical_to_logical_map, .tolist()), on --gpus GPUs. Without it, before is the experts in order with no replicas.",
    };

    public Option<bool> LoadPerSlot { get; } = new("--load-per-slot")
    {
        Description = "LOAD's columns are the slots of the --current placement, [layers, slots], as vLLM records expert_load_pass and its window per physical expert: they are summed per logical expert through --current first, as vLLM does before it rebalances, and before is each GPU's own slots' load as recorded.",
    };

    public Option<bool> Json { get; } = new("--json")
    {
        Description = "Print only the plan as JSON on standard output: per layer physical_to_logical (length R), logical_to_physical (padded with -1), replica_counts, and the balancedness before and after.",
    };

    /// <summary>The <c>plan</c> command with the argument and options, in the order its help lists them; no action yet.</summary>
    public Command CreateCommand() => new(
        "plan",
        "Replicate the hottest experts and place the replicas on GPUs with DeepSeek's EPLB (hierarchical when --nodes divides --groups, global otherwise), and print each layer's balancedness across GPUs before and after.")
    {
        Load, Replicas, Groups, Nodes, Gpus, Current, LoadPerSlot, Json,
    };

    /// <summary>The values of a parsed command line.</summary>
    public PlanRequest Read(ParseResult parse) => new(
        parse.GetValue(Load)!,
        parse.GetValue(Replicas),
        parse.GetValue(Groups),
        parse.GetValue(Nodes),
        parse.GetValue(Gpus),
        parse.GetValue(Current),
        parse.GetValue(LoadPerSlot),
        parse.GetValue(Json));
}

/// <summary>What one <c>plan</c> command line asks for, as parsed (not yet checked against each other or the load).</summary>
/// <param name="Load">The load's file, as given.</param>
/// <param name="Replicas">Slots per layer (R).</param>
/// <param name="Groups">Expert groups (G).</param>
/// <param name="Nodes">Server nodes (N).</param>
/// <param name="Gpus">GPUs in all (P).</param>
/// <param name="Current">The placement serving now (--current); null for none.</param>
/// <param name="LoadPerSlot">Whether the load's columns are the slots of <paramref name="Current"/>.</param>
/// <param name="Json">Whether the plan is printed as JSON.</param>
internal sealed record PlanRequest(FileInfo Load, int Replicas, int Groups, int Nodes, int Gpus, FileInfo? Current, bool LoadPerSlot, bool Json);
