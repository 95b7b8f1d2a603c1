using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Placement;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>plan LOAD</c>: an expert replication and placement by DeepSeek's EPLB, with its balancedness.</summary>
internal static class PlanCommand
{
    /// <summary>The library's bound on slots per layer (far above deployments); --json's padded log2phy has a bound of its own (<see cref="TooLargeForJson"/>).</summary>
    public const int MaxSlotsPerLayer = ExpertPlacement.MaxPhysicalExperts;

    public static Command Create(CliConsole console)
    {
        var file = new Argument<FileInfo>("LOAD")
        {
            CustomParser = result => SharedOptions.ParseFile(result, "LOAD")!,
            Description = "Expert loads [layers, experts]: a .npy (int8, uint8, int16, uint16, int32, int64 or uint64 as a model's window_load() in Python; 2-D, or 1-D for one layer), a JSON array of arrays of whole numbers, or a snapshot saved with --save (a whole model: its window load; one layer: its tokens per expert).",
        };
        var replicas = SharedOptions.WholeNumber(
            new Option<int>("--replicas") { Description = "Physical expert slots per layer (R): at least the experts, a multiple of --gpus.", Required = true }, 1, MaxSlotsPerLayer, "the physical experts per layer");
        var groups = SharedOptions.WholeNumber(
            new Option<int>("--groups") { Description = "Expert groups (G), dividing the experts; 1 when the model has none.", DefaultValueFactory = _ => 1 }, 1, MaxSlotsPerLayer, "the number of expert groups");
        var nodes = SharedOptions.WholeNumber(
            new Option<int>("--nodes") { Description = "Server nodes (N), dividing --gpus. Hierarchical placement when N divides G, global otherwise.", DefaultValueFactory = _ => 1 }, 1, MaxSlotsPerLayer, "the number of nodes");
        var gpus = SharedOptions.WholeNumber(
            new Option<int>("--gpus") { Description = "GPUs in all (P), dividing --replicas.", Required = true }, 1, MaxSlotsPerLayer, "the number of GPUs");
        var current = new Option<FileInfo?>("--current")
        {
            CustomParser = result => SharedOptions.ParseFile(result, "--current"),
            Description = "The placement serving now, for the balancedness before: the JSON plan --json wrote (its physical_to_logical and gpus), or a [layers][slots] JSON array of each slot's expert (vLLM's physical_to_logical_map, .tolist()), on --gpus GPUs. Without it, before is the experts in order with no replicas.",
        };
        var perSlot = new Option<bool>("--load-per-slot")
        {
            Description = "LOAD's columns are the slots of the --current placement, [layers, slots], as vLLM records expert_load_pass and its window per physical expert: they are summed per logical expert through --current first, as vLLM does before it rebalances, and before is each GPU's own slots' load as recorded.",
        };
        var json = new Option<bool>("--json")
        {
            Description = "Print only the plan as JSON on standard output: per layer physical_to_logical (length R), logical_to_physical (padded with -1), replica_counts, and the balancedness before and after.",
        };
        var command = new Command(
            "plan",
            "Replicate the hottest experts and place the replicas on GPUs with DeepSeek's EPLB (hierarchical when --nodes divides --groups, global otherwise), and print each layer's balancedness across GPUs before and after.")
        {
            file, replicas, groups, nodes, gpus, current, perSlot, json,
        };
        command.SetAction(parse =>
        {
            var (r, g, n, p) = (parse.GetValue(replicas), parse.GetValue(groups), parse.GetValue(nodes), parse.GetValue(gpus));
            if (r % p != 0)
            {
                console.Error.WriteLine($"--replicas {r}: {r:N0} slots do not divide among --gpus {p} GPUs; give a multiple of {p:N0}.");
                return ExitCodes.Usage;
            }

            if (p % n != 0)
            {
                console.Error.WriteLine($"--nodes {n}: {n:N0} nodes do not divide --gpus {p}; give a divisor of {p:N0}.");
                return ExitCodes.Usage;
            }

            var deployedFile = parse.GetValue(current);
            if (parse.GetValue(perSlot) && deployedFile is null)
            {
                console.Error.WriteLine("--load-per-slot: the slots are those of the placement the load was recorded under; give it with --current.");
                return ExitCodes.Usage;
            }

            var path = parse.GetValue(file)!;
            if (!LoadMatrix.TryRead(console, path, parse.GetValue(perSlot) ? "slot" : "expert", out var loads, out var loadSource))
            {
                return ExitCodes.BadInput;
            }

            if (LoadMatrix.IdsNote(path, loads, loadSource) is { } idsNote)
            {
                console.Error.WriteLine(idsNote);
            }

            DeployedPlacement? deployed = null;
            if (deployedFile is not null && !DeployedPlacement.TryRead(console, deployedFile, out deployed))
            {
                return ExitCodes.BadInput;
            }

            // The library names its parameters; the files name their fields.
            static string InFileTerms(Exception exception) =>
                ErrorText.Of(exception).Replace("physicalToLogical", "physical_to_logical", StringComparison.Ordinal).Replace("slotLoads", "LOAD", StringComparison.Ordinal);
            var deployedGpus = deployed?.Gpus ?? p;
            double[]? measured = null;
            if (parse.GetValue(perSlot))
            {
                var (rows, slots) = (loads.GetLength(0), loads.GetLength(1));
                var against = $"--current {deployedFile} (against {path}: {Counted.Of(rows, "layer")} of {Counted.Of(slots, "slot")}, --load-per-slot)";
                long[,] logical;
                try
                {
                    logical = ExpertPlacement.LogicalLoads(loads, deployed!.PhysicalToLogical);
                }
                catch (Exception exception) when (exception is ArgumentException or OverflowException)
                {
                    console.Error.WriteLine($"{against}: {InFileTerms(exception)}");
                    return ExitCodes.BadInput;
                }

                if (slots % deployedGpus != 0)
                {
                    var whose = deployed!.Gpus is null ? "--gpus" : "the file's gpus field";
                    console.Error.WriteLine($"{against}: {Counted.Of(slots, "slot")} do not divide among {Counted.Of(deployedGpus, "GPU")} ({whose}); every GPU holds as many.");
                    return ExitCodes.BadInput;
                }

                measured = ExpertPlacement.IdentityBalancedness(loads, deployedGpus);
                loads = logical;
            }

            // The load file's reader refused more layers than a model has and more experts than a plan has slots.
            var (layers, experts) = (loads.GetLength(0), loads.GetLength(1));
            if (r < experts)
            {
                console.Error.WriteLine($"--replicas {r}: {path} has {experts:N0} experts and each needs a slot; give at least {experts:N0} (a multiple of --gpus {p}).");
                return ExitCodes.Usage;
            }

            if (experts % g != 0)
            {
                console.Error.WriteLine($"--groups {g}: {g:N0} groups do not divide the {experts:N0} experts of {path}; give a divisor of {experts:N0} (1 when the model has no groups).");
                return ExitCodes.Usage;
            }

            double[]? before;
            string? beforeIs = null;
            if (measured is not null)
            {
                before = measured;
                beforeIs = $"the current placement, {deployedFile!.Name}, as recorded: the load of each GPU's own {Counted.Of(deployed!.PhysicalToLogical[0].Length / deployedGpus, "slot")}";
            }
            else if (deployed is not null)
            {
                try
                {
                    before = ExpertPlacement.Balancedness(loads, deployed.PhysicalToLogical, deployedGpus);
                }
                catch (ArgumentException exception)
                {
                    console.Error.WriteLine($"--current {deployedFile} (against {path}: {Counted.Of(layers, "layer")} of {Counted.Of(experts, "expert")}): {InFileTerms(exception)}");
                    return ExitCodes.BadInput;
                }

                beforeIs = $"the current placement, {deployedFile!.Name}: {Counted.Of(deployed.PhysicalToLogical[0].Length, "slot")} per layer on {Counted.Of(deployedGpus, "GPU")}";
            }
            else
            {
                before = ExpertPlacement.IdentityBalancedness(loads, p);
            }

            // --json's size needs the most replicated expert, known once the plan is made: of many layers of many slots a
            // minute's work. One layer's plan gives a lower bound, and refuses most plans too large before that.
            if (parse.GetValue(json) && layers > 1 && HottestLayerPlan(loads, r, g, n, p) is var (hottest, layerPlan)
                && TooLargeForJson(layerPlan, layers, hottest) is { } early)
            {
                console.Error.WriteLine(early);
                return ExitCodes.BadInput;
            }

            var plan = ExpertPlacement.Rebalance(loads, r, g, n, p);
            var after = ExpertPlacement.Balancedness(loads, plan);
            if (parse.GetValue(json))
            {
                if (TooLargeForJson(plan, plan.Layers) is { } tooLarge)
                {
                    console.Error.WriteLine(tooLarge);
                    return ExitCodes.BadInput;
                }

                WriteJson(console.Out, plan, before, after);
            }
            else
            {
                Print(console.Out, path.ToString(), loadSource, plan, before, beforeIs, after);
            }

            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>The plan as text: its heading, each layer's balancedness before and after, and its placement.</summary>
    /// <param name="output">Where the text goes.</param>
    /// <param name="path">The load's file, as given.</param>
    /// <param name="loadSource">Which of a snapshot's loads was planned, in a phrase; null for an array of loads.</param>
    /// <param name="plan">The placement EPLB chose.</param>
    /// <param name="before">Each layer's balancedness before the plan; null where the GPUs do not divide the experts and --current gave no placement.</param>
    /// <param name="beforeIs">What <paramref name="before"/> is of, for the placement given by --current; null for the experts in order.</param>
    /// <param name="after">Each layer's balancedness under the plan.</param>
    private static void Print(TextWriter output, string path, string? loadSource, PlacementPlan plan, double[]? before, string? beforeIs, double[] after)
    {
        var policy = plan.Policy == PlacementPolicy.Hierarchical
            ? "hierarchical: groups packed to nodes, experts replicated within nodes, replicas packed to GPUs"
            : plan.Nodes > 1 && plan.Groups == 1
            ? $"global, experts replicated over all GPUs (--groups G, a multiple of the {plan.Nodes:N0} nodes, would place groups of experts by node)"
            : $"global: {Counted.Of(plan.Nodes, "node")} do not divide {Counted.Of(plan.Groups, "group")}, so experts are replicated over all GPUs";
        output.WriteLine($"plan {UnsafeText.Escaped(path)}: {Counted.Of(plan.Layers, "layer")} of {Counted.Of(plan.LogicalExperts, "expert")}, {Counted.Of(plan.PhysicalExperts, "slot")} per layer on {Counted.Of(plan.Gpus, "GPU")} ({plan.SlotsPerGpu:N0} each) in {Counted.Of(plan.Nodes, "node")}, {Counted.Of(plan.Groups, "group")}");
        if (loadSource is not null)
        {
            output.WriteLine($"load: {loadSource}");
        }

        output.WriteLine($"policy: {policy} (DeepSeek EPLB)");
        output.WriteLine();
        output.WriteLine("balancedness across GPUs (mean GPU load / max GPU load; 1 is even):");
        output.WriteLine(beforeIs is not null ? $"  before: {beforeIs}"
            : before is null ? $"  before: n/a ({Counted.Of(plan.Gpus, "GPU")} do not divide {Counted.Of(plan.LogicalExperts, "expert")}, so there is no placement without replicas to compare; --current gives the one serving)"
            : $"  before: experts in order, {plan.LogicalExperts / plan.Gpus:N0} per GPU, no replicas (--current gives the one serving)");
        output.WriteLine("  after:  the plan, a replica carrying its expert's load divided by the expert's replica count");
        output.WriteLine($"  {"layer",5}  {"before",6}  {"after",6}");
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            output.WriteLine($"  {layer,5}  {(before is null ? "n/a" : Figure(before[layer])),6}  {Figure(after[layer]),6}");
        }

        if (plan.Layers > 1)
        {
            output.WriteLine($"  {"min",5}  {(before is null ? "n/a" : Figure(before.Min())),6}  {Figure(after.Min()),6}");
            output.WriteLine($"  {"mean",5}  {(before is null ? "n/a" : Figure(before.Average())),6}  {Figure(after.Average()),6}");
        }

        output.WriteLine();
        output.WriteLine("placement: the logical expert in each slot, [one GPU], one node a line");
        var sharing = 0;
        var gpusPerNode = plan.Gpus / plan.Nodes;
        var holders = new GpuStamps(plan.Gpus);
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            output.WriteLine($"  layer {layer}:");
            var phy2log = plan.PhysicalToLogical(layer);
            for (var node = 0; node < plan.Nodes; node++)
            {
                var line = new StringBuilder($"    node {node}:");
                for (var gpu = node * gpusPerNode; gpu < (node + 1) * gpusPerNode; gpu++)
                {
                    var slots = phy2log.Slice(gpu * plan.SlotsPerGpu, plan.SlotsPerGpu).ToArray();
                    line.Append(" [").AppendJoin(' ', slots).Append(']');
                }

                output.WriteLine(line);
            }

            var counts = plan.ReplicaCounts(layer);
            var replicated = new List<string>();
            for (var e = 0; e < counts.Length; e++)
            {
                if (counts[e] > 1)
                {
                    var gpus = holders.Distinct(plan.LogicalToPhysical(layer, e), plan.SlotsPerGpu);
                    replicated.Add(gpus < counts[e] ? $"{e} x{counts[e]} on {Counted.Of(gpus, "GPU")}" : $"{e} x{counts[e]}");
                    sharing += gpus < counts[e] ? 1 : 0;
                }
            }

            output.WriteLine($"    replicated: {(replicated.Count == 0 ? "none" : string.Join(", ", replicated))}");
        }

        if (sharing > 0)
        {
            // EPLB packs replicas onto GPUs by load alone; the balancedness above counts them where they are.
            output.WriteLine();
            output.WriteLine($"note: {Counted.Of(sharing, "replicated expert")} (over all layers) {(sharing == 1 ? "has" : "have")} two or more replicas on one GPU (\"on N GPUs\" above), as EPLB's packing by load alone may place them: such replicas spread no load across GPUs, and their extra slots could hold other experts.");
        }
    }

    /// <summary>
    /// Counts the GPUs an expert's replicas sit on, in time linear in the replicas: a scan of every GPU's slots per
    /// replicated expert is quadratic in the slots, seconds a layer at 65,536 of them.
    /// </summary>
    private sealed class GpuStamps(int gpus)
    {
        // The count each GPU was last seen in: one stamp per count, so nothing is cleared between experts.
        private readonly int[] _seenIn = new int[gpus];
        private int _count;

        /// <summary>The distinct GPUs of <paramref name="slots"/>, the slots being laid out GPU by GPU.</summary>
        public int Distinct(ReadOnlySpan<int> slots, int slotsPerGpu)
        {
            _count++;
            var gpus = 0;
            foreach (var slot in slots)
            {
                ref var seen = ref _seenIn[slot / slotsPerGpu];
                gpus += seen == _count ? 0 : 1;
                seen = _count;
            }

            return gpus;
        }
    }

    private static string Figure(double value) => value.ToString("0.000", CultureInfo.InvariantCulture);

    /// <summary>
    /// The most entries of the padded <c>logical_to_physical</c> --json writes: as many as the largest
    /// <c>physical_to_logical</c> (1,024 layers of 65,536 slots), so that the whole output stays under the 1 GiB
    /// --current reads back. One expert given most of the replicas pads every expert's list to its count (4 layers
    /// of 4,096 experts, 65,536 slots: 3 GB).
    /// </summary>
    internal const long MaxJsonEntries = 1L << 26;

    /// <summary>
    /// The line refusing --json where the padded <c>logical_to_physical</c> of <paramref name="layers"/> layers would pass
    /// <see cref="MaxJsonEntries"/>; null when it fits. <paramref name="plan"/> is the whole plan's, or layer
    /// <paramref name="probedLayer"/>'s alone, whose most replicated expert the padding reaches at least.
    /// </summary>
    internal static string? TooLargeForJson(PlacementPlan plan, int layers, int? probedLayer = null)
    {
        var entries = (long)layers * plan.LogicalExperts * plan.MaxReplicas;
        var most = probedLayer is { } layer
            ? $"{plan.MaxReplicas:N0} replicas of layer {layer}'s most replicated expert, at most the plan's most"
            : $"{plan.MaxReplicas:N0} replicas of the most replicated expert";
        return entries <= MaxJsonEntries ? null
            : $"--json: logical_to_physical, EPLB's [layers, experts, most replicas] padded with -1, would hold {(probedLayer is null ? "" : "at least ")}{entries:N0} entries ({Counted.Of(layers, "layer")} x {Counted.Of(plan.LogicalExperts, "expert")} x {most}); "
              + $"--json writes at most {MaxJsonEntries:N0}: give fewer --replicas, or run without --json for the plan's summary.";
    }

    /// <summary>
    /// The layer whose hottest expert holds the largest share of its load, and its plan alone: EPLB plans each layer
    /// apart and replicates in proportion to load, so its most replicated expert has about the most replicas of the
    /// whole plan, and never more.
    /// </summary>
    private static (int Layer, PlacementPlan Plan) HottestLayerPlan(long[,] loads, int replicas, int groups, int nodes, int gpus)
    {
        var (layers, experts) = (loads.GetLength(0), loads.GetLength(1));
        var (hottest, share) = (0, -1.0);
        for (var layer = 0; layer < layers; layer++)
        {
            var (most, sum) = (0L, 0.0);
            for (var expert = 0; expert < experts; expert++)
            {
                most = Math.Max(most, loads[layer, expert]);
                sum += loads[layer, expert];
            }

            if ((sum > 0 ? most / sum : 0) is var layerShare && layerShare > share)
            {
                (hottest, share) = (layer, layerShare);
            }
        }

        var row = new long[1, experts];
        for (var expert = 0; expert < experts; expert++)
        {
            row[0, expert] = loads[hottest, expert];
        }

        return (hottest, ExpertPlacement.Rebalance(row, replicas, groups, nodes, gpus));
    }

    private static void WriteJson(TextWriter output, PlacementPlan plan, double[]? before, double[] after)
    {
        // Written layer by layer: EPLB's padded log2phy has layers x E x (most replicas) entries, more than one buffer should hold.
        using var json = new JsonOut(output);
        var writer = json.Writer;
        writer.WriteStartObject();
        writer.WriteString("algorithm", "DeepSeek EPLB");
        writer.WriteString("policy", plan.Policy == PlacementPolicy.Hierarchical ? "hierarchical" : "global");
        writer.WriteNumber("layers", plan.Layers);
        writer.WriteNumber("logical_experts", plan.LogicalExperts);
        writer.WriteNumber("physical_experts", plan.PhysicalExperts);
        writer.WriteNumber("groups", plan.Groups);
        writer.WriteNumber("nodes", plan.Nodes);
        writer.WriteNumber("gpus", plan.Gpus);
        WriteRows(json, "physical_to_logical", plan, plan.PhysicalToLogical);
        writer.WriteStartArray("logical_to_physical");
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            writer.WriteStartArray();
            for (var e = 0; e < plan.LogicalExperts; e++)
            {
                // EPLB's shape: one rectangular tensor, shorter lists padded with -1.
                writer.WriteStartArray();
                var replicas = plan.LogicalToPhysical(layer, e);
                for (var rank = 0; rank < plan.MaxReplicas; rank++)
                {
                    writer.WriteNumberValue(rank < replicas.Length ? replicas[rank] : -1);
                }

                writer.WriteEndArray();
                json.DrainWhenFull();
            }

            writer.WriteEndArray();
        }

        writer.WriteEndArray();
        WriteRows(json, "replica_counts", plan, plan.ReplicaCounts);
        writer.WritePropertyName("balancedness_before");
        if (before is null)
        {
            writer.WriteNullValue();
        }
        else
        {
            writer.WriteStartArray();
            Array.ForEach(before, writer.WriteNumberValue);
            writer.WriteEndArray();
        }

        writer.WriteStartArray("balancedness_after");
        Array.ForEach(after, writer.WriteNumberValue);
        writer.WriteEndArray();
        writer.WriteEndObject();
        json.Drain();
        output.WriteLine();
    }

    private delegate ReadOnlySpan<int> LayerRow(int layer);

    private static void WriteRows(JsonOut json, string name, PlacementPlan plan, LayerRow row)
    {
        json.Writer.WriteStartArray(name);
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            WriteArray(json.Writer, row(layer));
            json.DrainWhenFull();
        }

        json.Writer.WriteEndArray();
    }

    private static void WriteArray(Utf8JsonWriter writer, ReadOnlySpan<int> values)
    {
        writer.WriteStartArray();
        foreach (var value in values)
        {
            writer.WriteNumberValue(value);
        }

        writer.WriteEndArray();
    }
}
