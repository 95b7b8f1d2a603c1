using System.Globalization;
using System.Text;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Placement;

namespace MoeGpuStats.Cli.Commands;

/// <summary><c>plan</c>'s text output: its heading, each layer's balancedness before and after, and its placement.</summary>
internal static class PlanText
{
    /// <summary>The plan as text.</summary>
    /// <param name="output">Where the text goes.</param>
    /// <param name="path">The load's file, as given.</param>
    /// <param name="loadSource">Which of a snapshot's loads was planned, in a phrase; null for an array of loads.</param>
    /// <param name="plan">The placement EPLB chose.</param>
    /// <param name="before">Each layer's balancedness before the plan; null where the GPUs do not divide the experts and --current gave no placement.</param>
    /// <param name="beforeIs">What <paramref name="before"/> is of, for the placement given by --current; null for the experts in order.</param>
    /// <param name="after">Each layer's balancedness under the plan.</param>
    public static void Write(TextWriter output, string path, string? loadSource, PlacementPlan plan, double[]? before, string? beforeIs, double[] after)
    {
        WriteHeading(output, path, loadSource, plan);
        output.WriteLine();
        WriteBalancedness(output, plan, before, beforeIs, after);
        output.WriteLine();
        WritePlacement(output, plan);
    }

    private static void WriteHeading(TextWriter output, string path, string? loadSource, PlacementPlan plan)
    {
        output.WriteLine($"plan {UnsafeText.Escaped(path)}: {Counted.Of(plan.Layers, "layer")} of {Counted.Of(plan.LogicalExperts, "expert")}, {Counted.Of(plan.PhysicalExperts, "slot")} per layer on {Counted.Of(plan.Gpus, "GPU")} ({plan.SlotsPerGpu:N0} each) in {Counted.Of(plan.Nodes, "node")}, {Counted.Of(plan.Groups, "group")}");
        if (loadSource is not null)
        {
            output.WriteLine($"load: {loadSource}");
        }

        output.WriteLine($"policy: {Policy(plan)} (DeepSeek EPLB)");
    }

    /// <summary>The plan's policy, and for a global one on several nodes, why it is not hierarchical.</summary>
    private static string Policy(PlacementPlan plan) =>
        plan.Policy == PlacementPolicy.Hierarchical
            ? "hierarchical: groups packed to nodes, experts replicated within nodes, replicas packed to GPUs"
            : plan.Nodes > 1 && plan.Groups == 1
            ? $"global, experts replicated over all GPUs (--groups G, a multiple of the {plan.Nodes:N0} nodes, would place groups of experts by node)"
            : $"global: {Counted.Of(plan.Nodes, "node")} do not divide {Counted.Of(plan.Groups, "group")}, so experts are replicated over all GPUs";

    /// <summary>The table of each layer's balancedness before and after, with the minimum and mean over several layers.</summary>
    private static void WriteBalancedness(TextWriter output, PlacementPlan plan, double[]? before, string? beforeIs, double[] after)
    {
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
    }

    /// <summary>Each layer's slots, one node a line, and its replicated experts; then a note if replicas of one expert share a GPU.</summary>
    private static void WritePlacement(TextWriter output, PlacementPlan plan)
    {
        output.WriteLine("placement: the logical expert in each slot, [one GPU], one node a line");
        var sharing = 0;
        var holders = new GpuStamps(plan.Gpus);
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            output.WriteLine($"  layer {layer}:");
            WriteSlots(output, plan, layer);
            sharing += WriteReplicated(output, plan, layer, holders);
        }

        if (sharing > 0)
        {
            // EPLB packs replicas onto GPUs by load alone; the balancedness above counts them where they are.
            output.WriteLine();
            output.WriteLine($"note: {Counted.Of(sharing, "replicated expert")} (over all layers) {(sharing == 1 ? "has" : "have")} two or more replicas on one GPU (\"on N GPUs\" above), as EPLB's packing by load alone may place them: such replicas spread no load across GPUs, and their extra slots could hold other experts.");
        }
    }

    /// <summary>The logical expert in each of <paramref name="layer"/>'s slots, each GPU's in brackets, one node a line.</summary>
    private static void WriteSlots(TextWriter output, PlacementPlan plan, int layer)
    {
        var gpusPerNode = plan.Gpus / plan.Nodes;
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
    }

    /// <summary>
    /// The line of <paramref name="layer"/>'s replicated experts, with the GPUs they are on where fewer than their
    /// replicas; returns how many such experts share a GPU between replicas.
    /// </summary>
    private static int WriteReplicated(TextWriter output, PlacementPlan plan, int layer, GpuStamps holders)
    {
        var sharing = 0;
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
        return sharing;
    }

    private static string Figure(double value) => value.ToString("0.000", CultureInfo.InvariantCulture);

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
}
