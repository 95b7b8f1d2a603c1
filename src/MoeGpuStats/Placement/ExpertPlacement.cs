using static System.FormattableString;

namespace MoeGpuStats.Placement;

/// <summary>
/// Expert replication and placement for expert parallelism: DeepSeek's EPLB
/// (<see href="https://github.com/deepseek-ai/EPLB"/>, <c>eplb.py</c>, MIT licence), ported step by
/// step, and the balancedness of a placement as vLLM reports it.
/// </summary>
/// <remarks>
/// <para>
/// Loads become float32 and every sum and quotient stays float32, as in EPLB, so a plan is EPLB's
/// for the same input: its README example gives the published placement. Two orders EPLB leaves to
/// torch are fixed here: equal loads are sorted by expert index (torch's default CPU sort is not
/// stable, so EPLB itself may order such ties differently from one build to another), and a group's
/// load is summed in expert order (torch may add in another order; the sums differ only past 2^24
/// tokens, where float32 stops counting every token). Either way the plan is equally balanced.
/// </para>
/// <para>Every layer is planned on its own; a plan depends only on the loads' proportions within a layer up to float32 rounding.</para>
/// </remarks>
public static class ExpertPlacement
{
    /// <summary>
    /// The most physical expert slots per layer <see cref="Rebalance"/> plans, <c>R</c>: 65,536, far above
    /// deployments (DeepSeek-V3 prefills on 288). A plan's arrays and time grow with <c>R</c>, so a larger
    /// one is refused before anything is allocated.
    /// </summary>
    public const int MaxPhysicalExperts = 65_536;

    /// <summary>
    /// The most slots of a whole plan, <c>layers · R</c>: 2^26, a model's most layers
    /// (<see cref="ModelRoutingStatsOptions.MaxLayers"/>) of <see cref="MaxPhysicalExperts"/> each (<c>moegs plan</c> of that
    /// size takes about 2 GB, README says). It keeps a small load matrix (one expert, thousands of rows) from asking for tens of GB.
    /// </summary>
    public const int MaxSlots = ModelRoutingStatsOptions.MaxLayers * MaxPhysicalExperts;

    /// <summary>
    /// EPLB's <c>rebalance_experts</c>: replicates the hottest experts to <paramref name="replicas"/>
    /// physical slots per layer and packs them onto <paramref name="gpus"/> GPUs, hierarchically (groups
    /// to nodes first) when <paramref name="nodes"/> divides <paramref name="groups"/>, globally otherwise.
    /// </summary>
    /// <param name="loads">
    /// <c>[layers, E]</c>: the expert load of each logical expert, in token-expert slots (a token routed to k
    /// experts adds 1 to each; any non-negative unit works, the same for a whole layer), e.g. a window of steps'
    /// <see cref="ModelRoutingStats.WindowLoad()"/>.
    /// </param>
    /// <param name="replicas">Physical expert slots per layer, <c>R</c>: at least <c>E</c>, a multiple of <paramref name="gpus"/>, at most <see cref="MaxPhysicalExperts"/>.</param>
    /// <param name="groups">Expert groups, <c>G</c>, dividing <c>E</c> (consecutive experts form a group; 1 when the model has none).</param>
    /// <param name="nodes">Server nodes, <c>N</c>, dividing <paramref name="gpus"/>; GPUs within a node share the faster network.</param>
    /// <param name="gpus">GPUs in all, <c>P</c>.</param>
    /// <returns>The plan: <c>phy2log</c>, <c>log2phy</c> and <c>logcnt</c> per layer.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="loads"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// A load is negative; <paramref name="loads"/> has no layer or no expert;
    /// <c>R</c> or <c>E</c> is above <see cref="MaxPhysicalExperts"/>; <c>R &lt; E</c>;
    /// <paramref name="gpus"/> does not divide <c>R</c>; <paramref name="groups"/> does not divide
    /// <c>E</c>; <paramref name="nodes"/> does not divide <paramref name="gpus"/>; or <c>layers · R</c>
    /// is above <see cref="MaxSlots"/>.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="replicas"/>, <paramref name="groups"/>, <paramref name="nodes"/> or <paramref name="gpus"/> is below 1.</exception>
    public static PlacementPlan Rebalance(long[,] loads, int replicas, int groups, int nodes, int gpus)
    {
        ArgumentNullException.ThrowIfNull(loads);
        var layers = loads.GetLength(0);
        var experts = loads.GetLength(1);
        ThrowIfBelowOne(replicas, groups, nodes, gpus);
        if (Problem(layers, experts, replicas, groups, nodes, gpus) is { } problem)
        {
            throw new ArgumentException(problem.Message, problem.ParamName);
        }

        CheckLoads(loads);
        var hierarchical = groups % nodes == 0;
        var (planGroups, planNodes) = hierarchical ? (groups, nodes) : (1, 1);
        var phy2log = new int[layers * replicas];
        var phyrank = new int[layers * replicas];
        var logcnt = new int[layers * experts];
        var row = new float[experts];
        for (var layer = 0; layer < layers; layer++)
        {
            for (var e = 0; e < experts; e++)
            {
                row[e] = loads[layer, e];
            }

            Eplb.RebalanceLayer(
                row,
                replicas,
                planGroups,
                planNodes,
                gpus,
                phy2log.AsSpan(layer * replicas, replicas),
                phyrank.AsSpan(layer * replicas, replicas),
                logcnt.AsSpan(layer * experts, experts));
        }

        return new PlacementPlan(hierarchical ? PlacementPolicy.Hierarchical : PlacementPolicy.Global, layers, experts, replicas, groups, nodes, gpus, phy2log, phyrank, logcnt);
    }

    /// <summary>
    /// Why <see cref="Rebalance"/> refuses these sizes: the name of its parameter at fault and a message
    /// that names it; null when it accepts them. Loads are not looked at, and each count is at least 1 (refused before).
    /// </summary>
    /// <param name="layers">Rows of the load matrix.</param>
    /// <param name="experts">Logical experts per layer, <c>E</c>.</param>
    /// <param name="replicas">Physical expert slots per layer, <c>R</c>.</param>
    /// <param name="groups">Expert groups, <c>G</c>.</param>
    /// <param name="nodes">Server nodes, <c>N</c>.</param>
    /// <param name="gpus">GPUs, <c>P</c>.</param>
    internal static (string ParamName, string Message)? Problem(int layers, int experts, int replicas, int groups, int nodes, int gpus)
    {
        if (layers < 1 || experts < 1)
        {
            return ("loads", Invariant($"loads is [{layers}, {experts}]; a plan needs at least one layer of at least one expert."));
        }

        if (replicas > MaxPhysicalExperts)
        {
            return (nameof(replicas), Invariant($"replicas is {replicas:N0}; a plan has at most {MaxPhysicalExperts:N0} slots per layer."));
        }

        if (experts > MaxPhysicalExperts)
        {
            return ("loads", Invariant($"loads has {experts:N0} experts per layer; a plan places at most {MaxPhysicalExperts:N0} (one slot each at least)."));
        }

        if (replicas < experts)
        {
            return (nameof(replicas), Invariant($"replicas is {replicas:N0} for {experts:N0} experts; every expert needs at least one, so give at least {experts:N0}."));
        }

        if (replicas % gpus != 0)
        {
            return (nameof(replicas), Invariant($"replicas is {replicas:N0}, which does not divide among gpus = {gpus:N0}; give a multiple of {gpus:N0}."));
        }

        if (experts % groups != 0)
        {
            return (nameof(groups), Invariant($"groups is {groups:N0}, which does not divide the {experts:N0} experts; give a divisor of {experts:N0} (1 when the model has no groups)."));
        }

        if (gpus % nodes != 0)
        {
            return (nameof(nodes), Invariant($"nodes is {nodes:N0}, which does not divide gpus = {gpus:N0}; give a divisor of {gpus:N0}."));
        }

        if ((long)layers * replicas > MaxSlots)
        {
            return (nameof(replicas), Invariant($"replicas is {replicas:N0} for {layers:N0} layers: {(long)layers * replicas:N0} slots, more than a plan holds ({MaxSlots:N0})."));
        }

        return null;
    }

    /// <summary>Refuses the first count below 1, named as <see cref="Rebalance"/>'s parameter.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A count is below 1.</exception>
    private static void ThrowIfBelowOne(int replicas, int groups, int nodes, int gpus)
    {
        ThrowIfBelowOne(replicas);
        if (groups < 1)
        {
            throw OutOfRange.Error(nameof(groups), groups, "it must be at least 1 (1 when the model has no groups).");
        }

        ThrowIfBelowOne(nodes);
        ThrowIfBelowOne(gpus);
    }

    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is below 1.</exception>
    private static void ThrowIfBelowOne(int count, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(count))] string name = "")
    {
        if (count < 1)
        {
            throw OutOfRange.Error(name, count, "it must be at least 1.");
        }
    }

    /// <summary>
    /// vLLM's balancedness of each layer across GPUs: mean GPU load over the largest GPU load, where a
    /// GPU's load is the sum, over its slots, of the slot's expert's load divided by that expert's replica
    /// count (replicas share their expert's tokens evenly). 1 is perfect balance; 1/P is one GPU doing all.
    /// A layer without load counts as balanced (1).
    /// </summary>
    /// <param name="loads"><c>[layers, E]</c>, the expert loads the plan is judged against (token-expert slots, non-negative).</param>
    /// <param name="plan">A plan for the same layers and experts.</param>
    /// <returns>One figure per layer, in (0, 1].</returns>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">The shapes differ, or a load is negative.</exception>
    public static double[] Balancedness(long[,] loads, PlacementPlan plan)
    {
        ArgumentNullException.ThrowIfNull(loads);
        ArgumentNullException.ThrowIfNull(plan);
        if (loads.GetLength(0) != plan.Layers || loads.GetLength(1) != plan.LogicalExperts)
        {
            throw new ArgumentException(Invariant($"loads is [{loads.GetLength(0)}, {loads.GetLength(1)}] but the plan is for [{plan.Layers}, {plan.LogicalExperts}]; give the loads of the plan's layers and experts."), nameof(loads));
        }

        CheckLoads(loads);
        var result = new double[plan.Layers];
        var gpuLoad = new double[plan.Gpus];
        for (var layer = 0; layer < plan.Layers; layer++)
        {
            result[layer] = LayerBalancedness(loads, layer, plan.PhysicalToLogical(layer), plan.ReplicaCounts(layer), gpuLoad);
        }

        return result;
    }

    /// <summary>
    /// The balancedness (as <see cref="Balancedness(long[,], PlacementPlan)"/>) of a placement given as its
    /// slots' experts: a deployed one, as vLLM's <c>physical_to_logical_map</c> or a plan's
    /// <c>physical_to_logical</c> holds it, to compare a new plan with what serves now.
    /// </summary>
    /// <param name="loads"><c>[layers, E]</c>, expert loads in token-expert slots, non-negative.</param>
    /// <param name="physicalToLogical">Per layer, the logical expert in each of the <c>R</c> slots; GPU <c>g</c> holds slots <c>g·R/P</c> to <c>(g+1)·R/P − 1</c>. Every expert has a slot.</param>
    /// <param name="gpus">GPUs, <c>P</c>, dividing <c>R</c>.</param>
    /// <returns>One figure per layer, in (0, 1].</returns>
    /// <exception cref="ArgumentNullException">An argument or a layer's row is null.</exception>
    /// <exception cref="ArgumentException">
    /// The loads have no expert, or a load is negative; the rows are not one per layer of one length <c>R</c>; <paramref name="gpus"/>
    /// does not divide <c>R</c>; a slot's expert is outside <c>[0, E)</c>; or an expert has no
    /// slot (its tokens would have nowhere to go). The message names the layer and slot.
    /// </exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="gpus"/> is below 1.</exception>
    public static double[] Balancedness(long[,] loads, IReadOnlyList<int[]> physicalToLogical, int gpus)
    {
        ArgumentNullException.ThrowIfNull(loads);
        ArgumentNullException.ThrowIfNull(physicalToLogical);
        CheckHasExperts(loads);
        CheckLoads(loads);
        var (layers, experts) = (loads.GetLength(0), loads.GetLength(1));
        var rows = Rows(physicalToLogical);
        CheckRowCount(rows, layers);
        ThrowIfBelowOne(gpus);

        if (layers == 0)
        {
            return [];
        }

        var slots = (rows[0] ?? throw new ArgumentNullException(nameof(physicalToLogical), "physicalToLogical[0] is null.")).Length;
        if (slots == 0)
        {
            throw new ArgumentException("physicalToLogical[0] has no slots; every expert needs one.", nameof(physicalToLogical));
        }

        if (slots % gpus != 0)
        {
            throw new ArgumentException(Invariant($"physicalToLogical has {Plural.Of(slots, "slot")} per layer; {gpus:N0} GPUs hold an equal number each, so give a multiple of {gpus:N0}."), nameof(physicalToLogical));
        }

        var result = new double[layers];
        var gpuLoad = new double[gpus];
        var counts = new int[experts];
        for (var layer = 0; layer < layers; layer++)
        {
            var row = Row(rows, layer, slots, Invariant($"but layer 0 has {slots:N0}; every layer has the same number"));
            CountSlots(row, layer, counts);
            result[layer] = LayerBalancedness(loads, layer, row, counts, gpuLoad);
        }

        return result;
    }

    /// <summary>
    /// Loads recorded per physical slot summed into loads per logical expert through the placement that
    /// served them: EPLB's input from vLLM's <c>expert_load_window</c>, which vLLM forms the same way
    /// (<c>scatter_add_</c> over <c>physical_to_logical_map</c>) before it rebalances. The GPUs' loads
    /// themselves are the slots' in order: <see cref="IdentityBalancedness"/> of <paramref name="slotLoads"/>
    /// is the placement's balancedness as measured, with no assumption on how replicas share their tokens.
    /// </summary>
    /// <param name="slotLoads"><c>[layers, R]</c>: each physical slot's load, token-expert slots, non-negative.</param>
    /// <param name="physicalToLogical">Per layer, the logical expert in each of the <c>R</c> slots; the experts are 0 to the largest named, each with a slot in every layer.</param>
    /// <returns><c>[layers, E]</c>, <c>E</c> the largest expert named plus one.</returns>
    /// <exception cref="ArgumentNullException">An argument or a layer's row is null.</exception>
    /// <exception cref="ArgumentException">
    /// A load is negative; the rows are not one per layer of <paramref name="slotLoads"/>'s <c>R</c> slots;
    /// a slot's expert is negative; an expert is named past the slots (each needs one); or an expert has no
    /// slot in a layer. The message names the row, slot or expert at fault.
    /// </exception>
    /// <exception cref="OverflowException">An expert's summed load passes 2^63 − 1.</exception>
    public static long[,] LogicalLoads(long[,] slotLoads, IReadOnlyList<int[]> physicalToLogical)
    {
        ArgumentNullException.ThrowIfNull(slotLoads);
        ArgumentNullException.ThrowIfNull(physicalToLogical);
        CheckLoads(slotLoads, nameof(slotLoads), "slot");
        var (layers, slots) = (slotLoads.GetLength(0), slotLoads.GetLength(1));
        var rows = Rows(physicalToLogical);
        CheckRowCount(rows, layers);
        var largest = -1;
        for (var layer = 0; layer < layers; layer++)
        {
            foreach (var expert in Row(rows, layer, slots, Invariant($"but the loads have {slots:N0} per layer; give the placement the loads were recorded under")))
            {
                largest = Math.Max(largest, expert);
            }
        }

        // Every expert needs a slot, so there are at most as many experts as slots: the result is no larger than the loads.
        if (largest >= slots)
        {
            throw new ArgumentException(Invariant($"physicalToLogical names expert {largest} but a layer has {Plural.Of(slots, "slot")}; every expert from 0 up needs one."), nameof(physicalToLogical));
        }

        var logical = new long[layers, largest + 1];
        var counts = new int[largest + 1];
        for (var layer = 0; layer < layers; layer++)
        {
            var row = rows[layer];
            CountSlots(row, layer, counts);
            for (var p = 0; p < row.Length; p++)
            {
                var sum = logical[layer, row[p]] + slotLoads[layer, p];
                logical[layer, row[p]] = sum >= 0
                    ? sum
                    : throw new OverflowException(Invariant($"slotLoads[{layer}, {p}] brings the load of expert {row[p]} in layer {layer}, summed over its slots, past {long.MaxValue:N0}."));
            }
        }

        return logical;
    }

    /// <summary>The map's rows, read once: every check and the sums see the same rows, whatever a computed list gives later.</summary>
    private static int[][] Rows(IReadOnlyList<int[]> physicalToLogical) => [.. physicalToLogical];

    /// <summary>Refuses a map without one row per layer.</summary>
    private static void CheckRowCount(int[][] physicalToLogical, int layers)
    {
        if (physicalToLogical.Length != layers)
        {
            throw new ArgumentException(Invariant($"physicalToLogical has {Plural.Of(physicalToLogical.Length, "row")}; it needs one per layer of the loads, {layers:N0}."), nameof(physicalToLogical));
        }
    }

    /// <summary>Layer <paramref name="layer"/>'s row of a map, refused where null or not of <paramref name="slots"/> slots (<paramref name="rule"/> says why that many).</summary>
    private static int[] Row(int[][] physicalToLogical, int layer, int slots, string rule)
    {
        var row = physicalToLogical[layer] ?? throw new ArgumentNullException(nameof(physicalToLogical), Invariant($"physicalToLogical[{layer}] is null."));
        return row.Length == slots
            ? row
            : throw new ArgumentException(Invariant($"physicalToLogical[{layer}] has {Plural.Of(row.Length, "slot")} {rule}."), nameof(physicalToLogical));
    }

    /// <summary>
    /// Counts each expert's slots in layer <paramref name="layer"/>'s row (checked by <see cref="Row"/>) into
    /// <paramref name="counts"/> (one per expert, <c>E</c>), refusing a slot whose expert is outside <c>[0, E)</c>
    /// and an expert without a slot, whose tokens would have nowhere to go.
    /// </summary>
    private static void CountSlots(int[] row, int layer, int[] counts)
    {
        Array.Clear(counts);
        for (var p = 0; p < row.Length; p++)
        {
            if ((uint)row[p] >= (uint)counts.Length)
            {
                var allowed = counts.Length > 0 ? Invariant($" from 0 to {counts.Length - 1}") : ", 0 or more";
                throw new ArgumentException(Invariant($"physicalToLogical[{layer}][{p}] is {row[p]}; a slot holds an expert{allowed}{UnusedSlotNote(row[p])}."), "physicalToLogical");
            }

            counts[row[p]]++;
        }

        if (Array.IndexOf(counts, 0) is var missing and >= 0)
        {
            throw new ArgumentException(Invariant($"physicalToLogical[{layer}] gives expert {missing} no slot; every expert from 0 to {counts.Length - 1:N0} needs one, or its tokens have nowhere to go."), "physicalToLogical");
        }
    }

    /// <summary>One layer's balancedness over <paramref name="gpuLoad"/>'s GPUs (overwritten), each holding an equal run of the slots.</summary>
    private static double LayerBalancedness(long[,] loads, int layer, ReadOnlySpan<int> phy2log, ReadOnlySpan<int> counts, double[] gpuLoad)
    {
        Array.Clear(gpuLoad);
        var slotsPerGpu = phy2log.Length / gpuLoad.Length;
        for (var p = 0; p < phy2log.Length; p++)
        {
            gpuLoad[p / slotsPerGpu] += (double)loads[layer, phy2log[p]] / counts[phy2log[p]];
        }

        return Ratio(gpuLoad);
    }

    /// <summary>
    /// The balancedness (as <see cref="Balancedness(long[,], PlacementPlan)"/>) of the placement without
    /// replication: experts in order, <c>E / P</c> consecutive ones on each GPU. Null when
    /// <paramref name="gpus"/> does not divide <c>E</c>, where there is no such placement.
    /// </summary>
    /// <param name="loads"><c>[layers, E]</c>, expert loads in token-expert slots, non-negative.</param>
    /// <param name="gpus">GPUs, <c>P</c>, at least 1.</param>
    /// <exception cref="ArgumentNullException"><paramref name="loads"/> is null.</exception>
    /// <exception cref="ArgumentException">The loads have no expert, or a load is negative.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="gpus"/> is below 1.</exception>
    public static double[]? IdentityBalancedness(long[,] loads, int gpus)
    {
        ArgumentNullException.ThrowIfNull(loads);
        ThrowIfBelowOne(gpus);

        CheckHasExperts(loads);
        CheckLoads(loads);
        var experts = loads.GetLength(1);
        if (experts % gpus != 0)
        {
            return null;
        }

        var result = new double[loads.GetLength(0)];
        var gpuLoad = new double[gpus];
        for (var layer = 0; layer < result.Length; layer++)
        {
            Array.Clear(gpuLoad);
            for (var e = 0; e < experts; e++)
            {
                gpuLoad[e / (experts / gpus)] += loads[layer, e];
            }

            result[layer] = Ratio(gpuLoad);
        }

        return result;
    }

    /// <remarks>
    /// A GPU's load is a sum of fractions (each expert's load over its replicas), so where every GPU holds the same
    /// their mean can round one unit in the last place above their maximum: the figure is kept in (0, 1].
    /// </remarks>
    private static double Ratio(double[] gpuLoad)
    {
        var max = gpuLoad.Max();
        return max > 0 ? Math.Min(1.0, gpuLoad.Average() / max) : 1.0;
    }

    /// <summary>What a slot of −1 is where a map holds one: vLLM's mark of a slot that holds no expert (elastic EP), which a placement here does not have.</summary>
    private static string UnusedSlotNote(int expert) =>
        expert == -1 ? " (-1 marks a slot without an expert in vLLM's elastic EP maps; a placement here gives every slot one)" : "";

    /// <summary>Refuses layers of no expert, whose balance is no figure (a map of theirs could only name experts that are not there).</summary>
    private static void CheckHasExperts(long[,] loads)
    {
        if (loads.GetLength(0) > 0 && loads.GetLength(1) == 0)
        {
            throw new ArgumentException(Invariant($"loads is [{loads.GetLength(0)}, 0]; give each layer's load of at least one expert."), nameof(loads));
        }
    }

    /// <summary>Refuses a negative load, naming it as <paramref name="name"/>'s entry of <paramref name="of"/> (an expert, or a slot).</summary>
    private static void CheckLoads(long[,] loads, string name = "loads", string of = "expert")
    {
        for (var layer = 0; layer < loads.GetLength(0); layer++)
        {
            for (var e = 0; e < loads.GetLength(1); e++)
            {
                if (loads[layer, e] < 0)
                {
                    throw new ArgumentException(Invariant($"{name}[{layer}, {e}], the load of {of} {e} in layer {layer}, is {loads[layer, e]:N0}; loads are token counts, 0 or more."), name);
                }
            }
        }
    }
}
