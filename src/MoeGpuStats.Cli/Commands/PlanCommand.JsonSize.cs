using MoeGpuStats.Placement;

namespace MoeGpuStats.Cli.Commands;

internal static partial class PlanCommand
{
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
    /// The line refusing --json before the whole plan is made, from one layer's plan; null when that does not refuse it.
    /// The size needs the most replicated expert, known once the plan is made: of many layers of many slots a minute's
    /// work. One layer's plan gives a lower bound, and refuses most plans too large before that.
    /// </summary>
    private static string? TooLargeForJsonBeforePlanning(PlanRequest request, long[,] loads)
    {
        var layers = loads.GetLength(0);
        return layers > 1 && HottestLayerPlan(loads, request.Replicas, request.Groups, request.Nodes, request.Gpus) is var (hottest, layerPlan)
            ? TooLargeForJson(layerPlan, layers, hottest)
            : null;
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
}
