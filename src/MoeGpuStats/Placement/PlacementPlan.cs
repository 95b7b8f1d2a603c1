namespace MoeGpuStats.Placement;

/// <summary>Which of EPLB's two policies made a plan.</summary>
public enum PlacementPolicy
{
    /// <summary>
    /// The nodes divide the expert groups: groups are packed to nodes, experts replicated within each
    /// node, replicas packed to the node's GPUs, so an expert's replicas never leave its group's node.
    /// </summary>
    Hierarchical,

    /// <summary>
    /// The nodes do not divide the groups: experts are replicated over all of them regardless of groups,
    /// and replicas packed to all GPUs (EPLB's hierarchical policy with one group and one node).
    /// </summary>
    Global,
}

/// <summary>
/// An expert replication and placement for every MoE layer, as DeepSeek's EPLB computes it
/// (<see cref="ExpertPlacement.Rebalance"/>): <c>R</c> physical expert slots, <c>R / P</c> on each of
/// <c>P</c> GPUs in order (GPU <c>g</c> holds slots <c>g·R/P</c> to <c>(g+1)·R/P − 1</c>), and GPUs
/// numbered node by node (<c>P / N</c> per node).
/// </summary>
public sealed class PlacementPlan
{
    private readonly int[] _phy2log;
    private readonly int[] _phyrank;
    private readonly int[] _logcnt;
    private readonly int[] _log2phy;
    private readonly int[] _firstReplica;

    internal PlacementPlan(PlacementPolicy policy, int layers, int logical, int physical, int groups, int nodes, int gpus, int[] phy2log, int[] phyrank, int[] logcnt)
    {
        Policy = policy;
        Layers = layers;
        LogicalExperts = logical;
        PhysicalExperts = physical;
        Groups = groups;
        Nodes = nodes;
        Gpus = gpus;
        _phy2log = phy2log;
        _phyrank = phyrank;
        _logcnt = logcnt;
        MaxReplicas = logcnt.Max();

        // Unpadded, an expert's replicas at a prefix sum of the counts: a layer's lists fill exactly R entries.
        _firstReplica = new int[layers * logical];
        _log2phy = new int[layers * physical];
        for (var layer = 0; layer < layers; layer++)
        {
            var next = layer * physical;
            for (var e = 0; e < logical; e++)
            {
                _firstReplica[(layer * logical) + e] = next;
                next += logcnt[(layer * logical) + e];
            }

            for (var p = 0; p < physical; p++)
            {
                var expert = phy2log[(layer * physical) + p];
                _log2phy[_firstReplica[(layer * logical) + expert] + phyrank[(layer * physical) + p]] = p;
            }
        }
    }

    /// <summary>The policy EPLB chose: hierarchical when the nodes divide the groups, global otherwise.</summary>
    public PlacementPolicy Policy { get; }

    /// <summary>MoE layers (the rows of the load matrix).</summary>
    public int Layers { get; }

    /// <summary>Logical experts per layer, <c>E</c>.</summary>
    public int LogicalExperts { get; }

    /// <summary>Physical expert slots per layer, <c>R</c> (replicas of the logical experts; <c>R ≥ E</c>).</summary>
    public int PhysicalExperts { get; }

    /// <summary>Expert groups, <c>G</c> (consecutive logical experts, <c>E / G</c> each).</summary>
    public int Groups { get; }

    /// <summary>Server nodes, <c>N</c>.</summary>
    public int Nodes { get; }

    /// <summary>GPUs, <c>P</c>, in all nodes together.</summary>
    public int Gpus { get; }

    /// <summary>Physical slots on each GPU, <c>R / P</c>.</summary>
    public int SlotsPerGpu => PhysicalExperts / Gpus;

    /// <summary>The most replicas any logical expert has in any layer: the width of EPLB's <c>log2phy</c>, which pads shorter lists with −1.</summary>
    public int MaxReplicas { get; }

    /// <summary>EPLB's <c>phy2log[layer]</c>: the logical expert held by each physical slot, length <c>R</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="layer"/> is not in [0, <see cref="Layers"/>).</exception>
    public ReadOnlySpan<int> PhysicalToLogical(int layer) => _phy2log.AsSpan(Row(layer) * PhysicalExperts, PhysicalExperts);

    /// <summary>Which replica of its logical expert each physical slot holds (0 for the first), length <c>R</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="layer"/> is not in [0, <see cref="Layers"/>).</exception>
    public ReadOnlySpan<int> ReplicaRanks(int layer) => _phyrank.AsSpan(Row(layer) * PhysicalExperts, PhysicalExperts);

    /// <summary>EPLB's <c>logcnt[layer]</c>: replicas of each logical expert (at least 1, summing to <c>R</c>), length <c>E</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="layer"/> is not in [0, <see cref="Layers"/>).</exception>
    public ReadOnlySpan<int> ReplicaCounts(int layer) => _logcnt.AsSpan(Row(layer) * LogicalExperts, LogicalExperts);

    /// <summary>
    /// EPLB's <c>log2phy[layer, expert]</c> without its −1 padding: the physical slots holding
    /// <paramref name="expert"/>, by replica rank; length <c>ReplicaCounts(layer)[expert]</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="layer"/> or <paramref name="expert"/> is out of range.</exception>
    public ReadOnlySpan<int> LogicalToPhysical(int layer, int expert)
    {
        OutOfRange.ThrowIfNotIndex(expert, LogicalExperts, "logical expert");
        var at = (Row(layer) * LogicalExperts) + expert;
        return _log2phy.AsSpan(_firstReplica[at], _logcnt[at]);
    }

    private int Row(int layer)
    {
        OutOfRange.ThrowIfNotIndex(layer, Layers, "layer");
        return layer;
    }
}
