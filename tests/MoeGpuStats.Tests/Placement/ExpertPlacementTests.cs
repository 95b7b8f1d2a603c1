using System.Text.Json;
using MoeGpuStats.Placement;
using static MoeGpuStats.Tests.Support.EplbExample;

namespace MoeGpuStats.Tests.Placement;

/// <summary>EPLB's published example, and what every plan must satisfy on any loads.</summary>
[UseCulture("sv-SE")]
public sealed class ExpertPlacementTests
{
    [Fact]
    public void ThePublishedExampleGivesThePublishedPlacement()
    {
        var plan = ExpertPlacement.Rebalance(PublishedLoads, replicas: 16, groups: 4, nodes: 2, gpus: 8);

        Assert.Equal(PlacementPolicy.Hierarchical, plan.Policy);
        Assert.Equal(PublishedPhy2Log[0], plan.PhysicalToLogical(0).ToArray());
        Assert.Equal(PublishedPhy2Log[1], plan.PhysicalToLogical(1).ToArray());

        // The counts the published map implies, written out: the hot experts got the four extra slots.
        Assert.Equal([1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1], plan.ReplicaCounts(0).ToArray());
        Assert.Equal([1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1], plan.ReplicaCounts(1).ToArray());
        Assert.Equal(2, plan.MaxReplicas);
        Assert.Equal([0, 2], plan.LogicalToPhysical(0, 5).ToArray().Order());
        Assert.Equal([12], plan.LogicalToPhysical(0, 0).ToArray());
    }

    [Fact]
    public void BalancednessOfThePublishedExampleRisesAndMatchesAHandCount()
    {
        var plan = ExpertPlacement.Rebalance(PublishedLoads, 16, 4, 2, 8);
        var after = ExpertPlacement.Balancedness(PublishedLoads, plan);
        var before = ExpertPlacement.IdentityBalancedness(PublishedLoads, 8);

        Assert.Null(before);
        var identity4 = ExpertPlacement.IdentityBalancedness(PublishedLoads, 4)!;

        // Layer 0 on 4 GPUs without replicas: 262, 330, 116, 325; mean 258.25 over max 330.
        Assert.Equal(258.25 / 330, identity4[0], 12);

        // Layer 0 after: GPU loads by hand from the published map (a replicated expert's load halves).
        double[] gpus =
        [
            (165 / 2.0) + 39, (165 / 2.0) + 4, 73 + (104 / 2.0), 61 + (104 / 2.0),
            (183 / 2.0) + 56, (183 / 2.0) + 40, 90 + (132 / 2.0), 86 + (132 / 2.0),
        ];
        Assert.Equal(gpus.Average() / gpus.Max(), after[0], 12);
        Assert.All(after, b => Assert.InRange(b, 0.7, 1.0));
    }

    /// <summary>
    /// A deployed placement given as its slots' experts is judged as a plan is: the published map on 8 GPUs
    /// gives the plan's own figures, the experts in order on 4 GPUs the identity's; a map with an expert
    /// outside the layer, one that leaves an expert without a slot, or slots that do not divide the GPUs
    /// is refused naming the layer and slot.
    /// </summary>
    /// <summary>A map's rows are read once: a computed list that gives other rows when asked again is judged by the rows it gave first.</summary>
    [Fact]
    public void AMapsRowsAreReadOnce()
    {
        int[] inOrder = [.. Enumerable.Range(0, 12)];
        var rows = new RowsThatChangeWhenIndexed([inOrder, inOrder]);

        Assert.Equal(ExpertPlacement.IdentityBalancedness(PublishedLoads, 4), ExpertPlacement.Balancedness(PublishedLoads, rows, 4));
        Assert.Equal(PublishedLoads, ExpertPlacement.LogicalLoads(PublishedLoads, rows));
    }

    /// <summary>Rows enumerated as given; indexed, a row of one slot, which no check of the enumerated rows would pass.</summary>
    private sealed class RowsThatChangeWhenIndexed(int[][] rows) : IReadOnlyList<int[]>
    {
        public int Count => rows.Length;

        public int[] this[int index] => [0];

        public IEnumerator<int[]> GetEnumerator() => ((IEnumerable<int[]>)rows).GetEnumerator();

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    /// <summary>
    /// Every GPU holding the same is balancedness 1, not one unit in the last place above: a GPU's load is a sum of
    /// fractions (6/3 + 11/3 here), whose mean rounds above their maximum.
    /// </summary>
    [Fact]
    public void GpusHoldingTheSameAreBalancedOneNotAbove()
    {
        Assert.Equal([1.0], ExpertPlacement.Balancedness(new long[,] { { 6, 11 } }, [[0, 1, 0, 1, 1, 0]], gpus: 3));

        var random = new Random(11);
        for (var trial = 0; trial < 300; trial++)
        {
            var experts = random.Next(2, 9);
            var loads = new long[1, experts];
            for (var e = 0; e < experts; e++)
            {
                loads[0, e] = random.Next(2) == 0 ? random.Next(1, 50) : random.NextInt64(1, long.MaxValue / experts);
            }

            var gpus = random.Next(1, 5);
            var plan = ExpertPlacement.Rebalance(loads, gpus * (experts + random.Next(0, 4)), groups: 1, nodes: 1, gpus: gpus);
            Assert.InRange(ExpertPlacement.Balancedness(loads, plan)[0], double.Epsilon, 1.0);
        }
    }

    [Fact]
    public void ADeployedPlacementIsJudgedAsAPlanIs()
    {
        var plan = ExpertPlacement.Rebalance(PublishedLoads, 16, 4, 2, 8);
        Assert.Equal(ExpertPlacement.Balancedness(PublishedLoads, plan), ExpertPlacement.Balancedness(PublishedLoads, PublishedPhy2Log, 8));
        int[] inOrder = [.. Enumerable.Range(0, 12)];
        Assert.Equal(ExpertPlacement.IdentityBalancedness(PublishedLoads, 4), ExpertPlacement.Balancedness(PublishedLoads, [inOrder, inOrder], 4));

        int[] outside = [.. inOrder[..11], 12];
        int[] missing = [.. inOrder[..11], 10];
        Assert.Equal(
            "physicalToLogical[1][11] is 12; a slot holds an expert from 0 to 11. (Parameter 'physicalToLogical')",
            Assert.Throws<ArgumentException>(() => ExpertPlacement.Balancedness(PublishedLoads, [inOrder, outside], 4)).Message);
        Assert.StartsWith(
            "physicalToLogical[0][2] is -1; a slot holds an expert from 0 to 11 (-1 marks a slot without an expert in vLLM's elastic EP maps;",
            Assert.Throws<ArgumentException>(() => ExpertPlacement.Balancedness(PublishedLoads, [[0, 1, -1, .. inOrder[3..]], inOrder], 4)).Message);
        Assert.Equal(
            "physicalToLogical[0] gives expert 11 no slot; every expert from 0 to 11 needs one, or its tokens have nowhere to go. (Parameter 'physicalToLogical')",
            Assert.Throws<ArgumentException>(() => ExpertPlacement.Balancedness(PublishedLoads, [missing, inOrder], 4)).Message);
        Assert.Equal(
            "physicalToLogical[1] has 8 slots but layer 0 has 12; every layer has the same number. (Parameter 'physicalToLogical')",
            Assert.Throws<ArgumentException>(() => ExpertPlacement.Balancedness(PublishedLoads, [inOrder, inOrder[..8]], 4)).Message);
        Assert.StartsWith(
            "physicalToLogical[0] has no slots; every expert needs one.",
            Assert.Throws<ArgumentException>(() => ExpertPlacement.Balancedness(PublishedLoads, [[], []], 4)).Message);
        Assert.StartsWith(
            "physicalToLogical[1] is null.",
            Assert.Throws<ArgumentNullException>(() => ExpertPlacement.Balancedness(PublishedLoads, [inOrder, null!], 4)).Message);
        Assert.StartsWith(
            "physicalToLogical has 12 slots per layer; 5 GPUs hold an equal number each, so give a multiple of 5.",
            Assert.Throws<ArgumentException>(() => ExpertPlacement.Balancedness(PublishedLoads, [inOrder, inOrder], 5)).Message);
        Assert.StartsWith(
            "physicalToLogical has 1 row; it needs one per layer of the loads, 2.",
            Assert.Throws<ArgumentException>(() => ExpertPlacement.Balancedness(PublishedLoads, [inOrder], 4)).Message);
    }

    /// <summary>
    /// Loads recorded per slot sum to the logical experts' loads through the placement they were recorded
    /// under (vLLM's scatter_add_ over physical_to_logical_map), however a replica's tokens were split.
    /// </summary>
    [Fact]
    public void SlotLoadsSumToTheExpertsLoadsThroughTheirPlacement()
    {
        var slots = PublishedSlotLoads();
        Assert.NotEqual(slots[0, 0], slots[0, 2]);   // expert 5's two replicas were loaded unevenly
        Assert.Equal(PublishedLoads, ExpertPlacement.LogicalLoads(slots, PublishedPhy2Log));
        int[] reversed = [.. Enumerable.Range(0, 12).Reverse()];
        var perSlot = new long[1, 12];
        for (var p = 0; p < 12; p++)
        {
            perSlot[0, p] = 100 + p;
        }

        var logical = ExpertPlacement.LogicalLoads(perSlot, [reversed]);
        Assert.Equal(Enumerable.Range(0, 12).Select(e => 100L + 11 - e), Enumerable.Range(0, 12).Select(e => logical[0, e]));
    }

    [Fact]
    public void SlotLoadsThatDoNotFitTheirPlacementAreRefusedNamingWhere()
    {
        var slots = PublishedSlotLoads();
        int[] ok = PublishedPhy2Log[0];
        string Refusal(long[,] loads, int[][] map) => Assert.Throws<ArgumentException>(() => ExpertPlacement.LogicalLoads(loads, map)).Message;

        Assert.StartsWith("physicalToLogical has 1 row; it needs one per layer of the loads, 2.", Refusal(slots, [ok]));
        Assert.StartsWith("physicalToLogical[1] has 12 slots but the loads have 16 per layer;", Refusal(slots, [ok, ok[..12]]));
        Assert.StartsWith("physicalToLogical[0][3] is -1; a slot holds an expert from 0 to 11 (-1 marks a slot without an expert in vLLM's elastic EP maps; a placement here gives every slot one).", Refusal(slots, [[.. ok[..3], -1, .. ok[4..]], ok]));
        Assert.StartsWith("physicalToLogical[0][3] is -2; a slot holds an expert from 0 to 11.", Refusal(slots, [[.. ok[..3], -2, .. ok[4..]], ok]));
        Assert.StartsWith("physicalToLogical names expert 99 but a layer has 16 slots;", Refusal(slots, [[.. ok[..3], 99, .. ok[4..]], ok]));
        Assert.StartsWith("physicalToLogical[1] gives expert 11 no slot; every expert from 0 to 11 needs one,", Refusal(slots, [ok, [.. ok[..14], 10, ok[15]]]));
        var negative = (long[,])slots.Clone();
        negative[1, 4] = -3;
        Assert.StartsWith("slotLoads[1, 4], the load of slot 4 in layer 1, is -3;", Refusal(negative, PublishedPhy2Log));
        var huge = new long[1, 2] { { long.MaxValue, 1 } };
        Assert.Throws<OverflowException>(() => ExpertPlacement.LogicalLoads(huge, [[0, 0]]));
        Assert.Throws<ArgumentNullException>(() => ExpertPlacement.LogicalLoads(slots, [ok, null!]));
        Assert.Equal(new long[2, 0], ExpertPlacement.LogicalLoads(new long[2, 0], [[], []]));

        // The largest id an int holds is refused as past the slots (its "+ 1" wrapped, and the sum indexed past the result).
        var four = new long[1, 4] { { 1, 2, 3, 4 } };
        Assert.StartsWith("physicalToLogical names expert 2147483647 but a layer has 4 slots;", Refusal(four, [[0, 1, 2, int.MaxValue]]));
        Assert.StartsWith("physicalToLogical names expert 2147483647 but a layer has 4 slots;", Refusal(four, [[0, 1, int.MaxValue, int.MaxValue - 1]]));
        Assert.StartsWith("physicalToLogical[0][0] is -1; a slot holds an expert, 0 or more (-1 marks", Refusal(four, [[-1, -1, -1, -1]]));
        Assert.Equal(
            "slotLoads[0, 1] brings the load of expert 0 in layer 0, summed over its slots, past 9,223,372,036,854,775,807.",
            Assert.Throws<OverflowException>(() => ExpertPlacement.LogicalLoads(new long[1, 3] { { long.MaxValue, 1, 1 } }, [[0, 0, 1]])).Message);
    }

    [Fact]
    public void NodesThatDoNotDivideTheGroupsFallBackToTheGlobalPolicy()
    {
        var plan = ExpertPlacement.Rebalance(PublishedLoads, replicas: 16, groups: 3, nodes: 2, gpus: 8);
        var global = ExpertPlacement.Rebalance(PublishedLoads, replicas: 16, groups: 1, nodes: 1, gpus: 8);

        Assert.Equal(PlacementPolicy.Global, plan.Policy);
        Assert.Equal(3, plan.Groups);
        for (var layer = 0; layer < 2; layer++)
        {
            Assert.Equal(global.PhysicalToLogical(layer).ToArray(), plan.PhysicalToLogical(layer).ToArray());
        }
    }

    /// <summary>
    /// Each size refused names its parameter, in ParamName and in the message (not a null ParamName, nor
    /// "GPUs" and "replicas" for the parameters gpus and replicas alike).
    /// </summary>
    [Theory]
    [InlineData(11, 4, 1, 8, "replicas", "replicas is 11 for 12 experts; every expert needs at least one, so give at least 12.")]
    [InlineData(20, 4, 2, 8, "replicas", "replicas is 20, which does not divide among gpus = 8; give a multiple of 8.")]
    [InlineData(16, 5, 1, 8, "groups", "groups is 5, which does not divide the 12 experts; give a divisor of 12 (1 when the model has no groups).")]
    [InlineData(16, 4, 3, 8, "nodes", "nodes is 3, which does not divide gpus = 8; give a divisor of 8.")]
    public void InvalidSizesNameTheParameterAtFault(int replicas, int groups, int nodes, int gpus, string parameter, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => ExpertPlacement.Rebalance(PublishedLoads, replicas, groups, nodes, gpus));
        Assert.Equal(parameter, error.ParamName);
        Assert.Equal($"{message} (Parameter '{parameter}')", error.Message);
    }

    [Fact]
    public void MoreSlotsThanAnArrayHoldsNameReplicas()
    {
        var error = Assert.Throws<ArgumentException>(() => ExpertPlacement.Rebalance(new long[70_000, 1], replicas: 40_000, groups: 1, nodes: 1, gpus: 1));
        Assert.Equal("replicas", error.ParamName);
        Assert.StartsWith("replicas is 40,000 for 70,000 layers: 2,800,000,000 slots, more than a plan holds (67,108,864).", error.Message);
    }

    /// <summary>
    /// Sizes a plan would take tens of GB or minutes for are refused before anything is allocated (they
    /// were accepted up to an array's 2^31 entries: a 1-expert layer with 2e9 replicas asked for ~14 arrays
    /// of 8 GB, and 32,767 one-expert layers of 65,536 slots for ~26 GB).
    /// </summary>
    [Theory]
    [InlineData(1, 1, ExpertPlacement.MaxPhysicalExperts + 1, "replicas", "replicas is 65,537; a plan has at most 65,536 slots per layer.")]
    [InlineData(1, ExpertPlacement.MaxPhysicalExperts + 1, ExpertPlacement.MaxPhysicalExperts, "loads", "loads has 65,537 experts per layer; a plan places at most 65,536 (one slot each at least).")]
    [InlineData(1_025, 1, ExpertPlacement.MaxPhysicalExperts, "replicas", "replicas is 65,536 for 1,025 layers: 67,174,400 slots, more than a plan holds (67,108,864).")]
    public void HugePlansAreRefusedBeforeAllocating(int layers, int experts, int replicas, string parameter, string message)
    {
        var loads = new long[layers, experts];
        var before = GC.GetAllocatedBytesForCurrentThread();

        var error = Assert.Throws<ArgumentException>(() => ExpertPlacement.Rebalance(loads, replicas, groups: 1, nodes: 1, gpus: 1));

        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 10, "the refusal allocated the plan");
        Assert.Equal(parameter, error.ParamName);
        Assert.Equal($"{message} (Parameter '{parameter}')", error.Message);
    }

    [Fact]
    public void TheLargestPlanPerLayerIsPlanned()
    {
        var loads = new long[1, 256];
        loads[0, 3] = 1_000;
        var plan = ExpertPlacement.Rebalance(loads, ExpertPlacement.MaxPhysicalExperts, groups: 8, nodes: 4, gpus: 32);

        // Its node's 16,384 slots less one for each of the node's other 63 experts (two groups of 32).
        Assert.Equal(16_384 - 63, plan.ReplicaCounts(0)[3]);
    }

    /// <summary>Loads at fault name loads: no layer, no expert, a negative load, a shape other than the plan's.</summary>
    [Fact]
    public void LoadsAtFaultNameLoads()
    {
        var empty = Assert.Throws<ArgumentException>(() => ExpertPlacement.Rebalance(new long[0, 12], 16, 4, 2, 8));
        Assert.Equal("loads", empty.ParamName);
        Assert.StartsWith("loads is [0, 12]; a plan needs at least one layer of at least one expert.", empty.Message);

        var loads = (long[,])PublishedLoads.Clone();
        loads[1, 3] = -1;
        var negative = Assert.Throws<ArgumentException>(() => ExpertPlacement.Rebalance(loads, 16, 4, 2, 8));
        Assert.Equal("loads", negative.ParamName);
        Assert.StartsWith("loads[1, 3], the load of expert 3 in layer 1, is -1; loads are token counts, 0 or more.", negative.Message);

        var plan = ExpertPlacement.Rebalance(PublishedLoads, 16, 4, 2, 8);
        var shape = Assert.Throws<ArgumentException>(() => ExpertPlacement.Balancedness(new long[1, 12], plan));
        Assert.Equal("loads", shape.ParamName);
        Assert.StartsWith("loads is [1, 12] but the plan is for [2, 12]", shape.Message);
        Assert.Equal("loads", Assert.Throws<ArgumentException>(() => ExpertPlacement.Balancedness(loads, plan)).ParamName);
        Assert.Equal("loads", Assert.Throws<ArgumentException>(() => ExpertPlacement.IdentityBalancedness(loads, 4)).ParamName);

        // Loads of no expert have no balance; a map for them named a slot's expert 0 as out of "0 or more".
        foreach (var none in new Action[] { () => ExpertPlacement.Balancedness(new long[1, 0], [[0, 1]], 1), () => ExpertPlacement.IdentityBalancedness(new long[1, 0], 1) })
        {
            var noExpert = Assert.Throws<ArgumentException>(none);
            Assert.Equal(("loads", "loads is [1, 0]; give each layer's load of at least one expert. (Parameter 'loads')"), (noExpert.ParamName, noExpert.Message));
        }

        // No layer is no figure, not a refusal.
        Assert.Empty(ExpertPlacement.Balancedness(new long[0, 0], [], 1));
        Assert.Empty(ExpertPlacement.IdentityBalancedness(new long[0, 0], 1)!);
    }

    /// <summary>The other arguments out of range, on the plan too: each exception names its parameter.</summary>
    [Fact]
    public void OtherArgumentsOutOfRangeNameTheirParameter()
    {
        Assert.Equal("loads", Assert.Throws<ArgumentNullException>(() => ExpertPlacement.Rebalance(null!, 16, 4, 2, 8)).ParamName);
        Assert.Equal("gpus", Assert.Throws<ArgumentOutOfRangeException>(() => ExpertPlacement.IdentityBalancedness(PublishedLoads, 0)).ParamName);
        var plan = ExpertPlacement.Rebalance(PublishedLoads, 16, 4, 2, 8);
        Assert.Equal("plan", Assert.Throws<ArgumentNullException>(() => ExpertPlacement.Balancedness(PublishedLoads, null!)).ParamName);
        Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => plan.PhysicalToLogical(2)).ParamName);
        Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => plan.ReplicaRanks(-1)).ParamName);
        Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => plan.ReplicaCounts(2)).ParamName);
        Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => plan.LogicalToPhysical(2, 0)).ParamName);
        Assert.Equal("expert", Assert.Throws<ArgumentOutOfRangeException>(() => plan.LogicalToPhysical(0, 12)).ParamName);
    }

    /// <summary>
    /// The width of EPLB's padded log2phy is the most replicas over every layer, not the first layer's most: a flat
    /// first layer (4 extra slots, one to each expert: 2 replicas each) before a layer whose one hot expert takes all
    /// 4 extra slots (1000 / 1, / 2, / 3, / 4 stay above the others' 1: 5 replicas).
    /// </summary>
    [Fact]
    public void TheMostReplicasAreCountedOverEveryLayer()
    {
        var plan = ExpertPlacement.Rebalance(new long[2, 4] { { 1, 1, 1, 1 }, { 1000, 1, 1, 1 } }, replicas: 8, groups: 1, nodes: 1, gpus: 1);

        Assert.Equal([2, 2, 2, 2], plan.ReplicaCounts(0).ToArray());
        Assert.Equal([5, 1, 1, 1], plan.ReplicaCounts(1).ToArray());
        Assert.Equal(5, plan.MaxReplicas);
        Assert.Equal(5, plan.LogicalToPhysical(1, 0).Length);
    }

    [Fact]
    public void ALayerWithoutLoadIsPlannedAndBalanced()
    {
        var plan = ExpertPlacement.Rebalance(new long[1, 8], replicas: 12, groups: 2, nodes: 2, gpus: 4);
        Assert.Equal(12, plan.ReplicaCounts(0).ToArray().Sum());
        Assert.Equal([1.0], ExpertPlacement.Balancedness(new long[1, 8], plan));
    }

    public static TheoryData<int, int, int, int, int, int> Shapes => new()
    {
        // seed, experts, replicas, groups, nodes, gpus
        { 1, 12, 16, 4, 2, 8 },
        { 2, 64, 80, 8, 4, 16 },
        { 3, 256, 288, 8, 4, 32 },
        { 4, 256, 320, 8, 8, 64 },
        { 5, 60, 72, 6, 4, 8 },
        { 6, 32, 32, 4, 2, 8 },
        { 7, 16, 64, 2, 2, 2 },
        { 8, 9, 12, 3, 1, 3 },
        { 9, 8, 24, 4, 4, 8 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void EveryPlanIsAValidPlacement(int seed, int experts, int replicas, int groups, int nodes, int gpus)
    {
        var random = new Random(seed);
        var loads = new long[5, experts];
        for (var layer = 0; layer < 5; layer++)
        {
            for (var e = 0; e < experts; e++)
            {
                // A skewed layer, a flat one, ties, and zeros all occur.
                loads[layer, e] = layer switch
                {
                    0 => (long)(1_000_000 / Math.Pow(e + 1, 1.2)),
                    1 => 500,
                    2 => random.Next(0, 4),
                    3 => random.Next(0, 2) * random.NextInt64(0, 1L << 40),
                    _ => random.Next(0, 100_000),
                };
            }
        }

        var plan = ExpertPlacement.Rebalance(loads, replicas, groups, nodes, gpus);
        var groupSize = experts / groups;
        for (var layer = 0; layer < 5; layer++)
        {
            var phy2log = plan.PhysicalToLogical(layer).ToArray();
            var ranks = plan.ReplicaRanks(layer).ToArray();
            var counts = plan.ReplicaCounts(layer).ToArray();

            Assert.All(counts, c => Assert.True(c >= 1));
            Assert.Equal(replicas, counts.Sum());
            Assert.Equal(replicas, phy2log.Length);
            for (var e = 0; e < experts; e++)
            {
                var slots = Enumerable.Range(0, replicas).Where(p => phy2log[p] == e).ToArray();
                Assert.Equal(counts[e], slots.Length);
                Assert.Equal(Enumerable.Range(0, counts[e]), slots.Select(p => ranks[p]).Order());
                var log2phy = plan.LogicalToPhysical(layer, e).ToArray();
                Assert.Equal(slots, log2phy.Order());
                Assert.Equal(Enumerable.Range(0, counts[e]), log2phy.Select(p => ranks[p]));
            }

            Assert.Equal(replicas / gpus, plan.SlotsPerGpu);

            if (plan.Policy == PlacementPolicy.Hierarchical)
            {
                var perNode = replicas / nodes;
                var nodeOfGroup = new Dictionary<int, int>();
                for (var p = 0; p < replicas; p++)
                {
                    var group = phy2log[p] / groupSize;
                    var node = p / perNode;
                    Assert.Equal(nodeOfGroup.TryAdd(group, node) ? node : nodeOfGroup[group], node);
                }

                Assert.Equal(groups, nodeOfGroup.Count);
                Assert.All(Enumerable.Range(0, nodes), n => Assert.Equal(groups / nodes, nodeOfGroup.Values.Count(v => v == n)));
            }

            var balancedness = ExpertPlacement.Balancedness(loads, plan)[layer];
            Assert.InRange(balancedness, 1.0 / gpus, 1.0);
        }
    }

    [Theory]
    [InlineData(1, 8, 12)]
    [InlineData(2, 64, 200)]
    [InlineData(3, 5, 5)]
    [InlineData(4, 7, 40)]
    public void ReplicationByHeapChoosesWhatEplbsScanChooses(int seed, int experts, int replicas)
    {
        var random = new Random(seed);
        var weight = Enumerable.Range(0, experts).Select(_ => (float)random.Next(0, 6) * random.Next(1, 1000)).ToArray();
        var phy2log = new int[replicas];
        var rank = new int[replicas];
        var count = new int[experts];

        Eplb.ReplicateExperts(weight, phy2log, rank, count);

        // EPLB: argmax(weight / logcnt) over all experts, the first on ties (torch.max), one replica at a time.
        var expectedCount = Enumerable.Repeat(1, experts).ToArray();
        for (var i = experts; i < replicas; i++)
        {
            var best = 0;
            for (var e = 1; e < experts; e++)
            {
                if (weight[e] / expectedCount[e] > weight[best] / expectedCount[best])
                {
                    best = e;
                }
            }

            Assert.Equal(best, phy2log[i]);
            Assert.Equal(expectedCount[best], rank[i]);
            expectedCount[best]++;
        }

        Assert.Equal(expectedCount, count);
    }

    [Fact]
    public void PackingPutsTheHeaviestFirstIntoTheLightestPackAndKeepsIndexOrderOnTies()
    {
        float[] weight = [5, 5, 5, 5, 9, 1];
        var pack = new int[6];
        var rank = new int[6];

        Eplb.BalancedPacking(weight, 2, pack, rank);

        // 9 -> pack 0; then the 5s in index order: 0 -> 1, 1 -> 1 (5 < 9), 2 -> 0 (9 < 10), 3 -> 1 (10 < 14, now full); 1 -> 0.
        Assert.Equal([1, 1, 0, 1, 0, 0], pack);
        Assert.Equal([0, 1, 1, 2, 0, 2], rank);
    }

    /// <summary>
    /// One item per pack: EPLB's balanced_packing returns item i in pack i (its groups_per_pack == 1 case),
    /// whatever the weights, so with as many groups as nodes group g sits on node g, the heavier group included.
    /// </summary>
    [Fact]
    public void PackingOneItemPerPackKeepsEachItemInItsOwnPack()
    {
        float[] weight = [1, 9, 5, 0];
        var pack = new int[4];
        var rank = new int[4];

        Eplb.BalancedPacking(weight, 4, pack, rank);

        Assert.Equal([0, 1, 2, 3], pack);
        Assert.Equal([0, 0, 0, 0], rank);

        var plan = ExpertPlacement.Rebalance(new long[,] { { 1, 1, 1, 1, 9, 9, 9, 9 } }, replicas: 8, groups: 2, nodes: 2, gpus: 2);
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 7], plan.PhysicalToLogical(0).ToArray());
    }

    [Theory]
    [InlineData(1, 12, 2)]
    [InlineData(2, 64, 8)]
    [InlineData(3, 300, 100)]
    [InlineData(4, 48, 16)]
    public void PackingByHeapChoosesWhatEplbsScanChooses(int seed, int items, int packs)
    {
        var random = new Random(seed);
        var weight = Enumerable.Range(0, items).Select(_ => (float)random.Next(0, 4) * random.Next(1, 50)).ToArray();
        var pack = new int[items];
        var rank = new int[items];

        Eplb.BalancedPacking(weight, packs, pack, rank);

        // EPLB: items heaviest first (index order on ties), each to the lightest pack with room, the first on ties.
        var perPack = items / packs;
        var packWeights = new float[packs];
        var packItems = new int[packs];
        foreach (var item in Enumerable.Range(0, items).OrderByDescending(i => weight[i]))
        {
            var best = -1;
            for (var p = 0; p < packs; p++)
            {
                if (packItems[p] < perPack && (best < 0 || packWeights[p] < packWeights[best]))
                {
                    best = p;
                }
            }

            Assert.Equal(best, pack[item]);
            Assert.Equal(packItems[best], rank[item]);
            packWeights[best] += weight[item];
            packItems[best]++;
        }
    }

    /// <summary>The largest packing the CLI allows, 65,536 slots on 32,768 GPUs: two slots on every GPU.</summary>
    [Fact]
    public void PackingTheLargestShapeFillsEveryPack()
    {
        var weight = Enumerable.Range(0, 65_536).Select(i => (float)((i * 7_919) % 65_521)).ToArray();
        var pack = new int[weight.Length];
        var rank = new int[weight.Length];

        Eplb.BalancedPacking(weight, 32_768, pack, rank);

        Assert.All(pack.CountBy(p => p), group => Assert.Equal(2, group.Value));
    }

    /// <summary>
    /// DeepSeek's own eplb.py (vendored beside this file, run with torch) and this port give the same
    /// placement and replica counts on random loads without ties, hierarchical and global, DeepSeek-V3's
    /// 256 experts on 288 slots among them. With ties each breaks them its own way (README, "Plan").
    /// </summary>
    [Fact]
    public void ThePlanIsDeepSeeksOwnOnLoadsWithoutTies()
    {
        var python = ExternalProgram.PythonWithTorch();
        Assert.SkipWhen(python is null, "no python3 with torch here (Debian: apt-get install python3-torch)");
        (int Experts, int Replicas, int Groups, int Nodes, int Gpus)[] shapes =
            [(12, 16, 4, 2, 8), (64, 80, 8, 4, 16), (60, 72, 6, 4, 8), (16, 64, 2, 2, 2), (9, 12, 3, 1, 3), (40, 60, 10, 5, 10), (24, 32, 6, 4, 4), (256, 288, 8, 4, 32)];
        var random = new Random(20);
        var cases = shapes.Select(shape =>
        {
            // Distinct loads per layer: no ties for either sort to break.
            var loads = new long[3, shape.Experts];
            for (var l = 0; l < loads.GetLength(0); l++)
            {
                var distinct = Enumerable.Range(1, 1 << 20).OrderBy(_ => random.Next()).Take(shape.Experts).ToArray();
                for (var e = 0; e < shape.Experts; e++)
                {
                    loads[l, e] = distinct[e];
                }
            }

            return (Shape: shape, Loads: loads);
        }).ToArray();
        var input = Path.Combine(Path.GetTempPath(), $"eplb-cases-{Guid.NewGuid():N}.json");
        File.WriteAllText(input, JsonSerializer.Serialize(cases.Select(c => new
        {
            loads = Enumerable.Range(0, c.Loads.GetLength(0)).Select(l => Enumerable.Range(0, c.Shape.Experts).Select(e => c.Loads[l, e])),
            replicas = c.Shape.Replicas,
            groups = c.Shape.Groups,
            nodes = c.Shape.Nodes,
            gpus = c.Shape.Gpus,
        })));

        try
        {
            var output = ExternalProgram.Run(python!, $"\"{Path.Combine(AppContext.BaseDirectory, "eplb", "eplb_upstream.py")}\" \"{input}\"", out var exitCode);
            Assert.True(exitCode == 0, output);
            var upstream = JsonDocument.Parse(output).RootElement.EnumerateArray().ToArray();
            Assert.Equal(cases.Length, upstream.Length);
            for (var i = 0; i < cases.Length; i++)
            {
                var (shape, loads) = cases[i];
                var plan = ExpertPlacement.Rebalance(loads, shape.Replicas, shape.Groups, shape.Nodes, shape.Gpus);
                for (var l = 0; l < loads.GetLength(0); l++)
                {
                    Assert.Equal(Row(upstream[i], "physical_to_logical", l), plan.PhysicalToLogical(l).ToArray());
                    Assert.Equal(Row(upstream[i], "replica_counts", l), plan.ReplicaCounts(l).ToArray());
                }
            }
        }
        finally
        {
            File.Delete(input);
        }

        static int[] Row(JsonElement result, string name, int layer) =>
            result.GetProperty(name)[layer].EnumerateArray().Select(value => value.GetInt32()).ToArray();
    }
}
