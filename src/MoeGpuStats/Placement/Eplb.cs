// Ported from DeepSeek's Expert Parallelism Load Balancer, eplb.py
// (https://github.com/deepseek-ai/EPLB, commit d52c72d), under its MIT License:
//
// MIT License
//
// Copyright (c) 2025 DeepSeek
//
// Permission is hereby granted, free of charge, to any person obtaining a copy
// of this software and associated documentation files (the "Software"), to deal
// in the Software without restriction, including without limitation the rights
// to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
// copies of the Software, and to permit persons to whom the Software is
// furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in all
// copies or substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
// IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
// FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
// AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
// LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
// OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
// SOFTWARE.

namespace MoeGpuStats.Placement;

/// <summary>
/// DeepSeek's EPLB, one layer at a time (EPLB's layers never interact). The arithmetic is EPLB's:
/// loads become float32 (<c>weight.float()</c>) and every sum and quotient stays float32, because
/// the choices compare those values and a wider type could break a tie EPLB keeps, or the reverse.
/// </summary>
internal static class Eplb
{
    /// <summary>
    /// EPLB's <c>balanced_packing</c>: items in descending weight go, one by one, to the lightest pack
    /// that still has room (the first such pack on equal weights, as Python's <c>min</c> picks), so each
    /// pack ends with <c>n / packs</c> items.
    /// </summary>
    /// <remarks>
    /// <para>
    /// EPLB orders items with torch's default (unstable) sort; here equal weights keep index order,
    /// which is what a stable sort (and NumPy's argsort on short rows, as vLLM's port uses) gives.
    /// </para>
    /// <para>
    /// A heap of the packs with room, ordered by (weight, index), yields the pack EPLB's scan of all packs
    /// picks, in O(log packs) per item instead of O(packs): the scan made 65,536 slots on 32,768 GPUs
    /// take seconds per layer.
    /// </para>
    /// </remarks>
    public static void BalancedPacking(ReadOnlySpan<float> weight, int packs, Span<int> packIndex, Span<int> rankInPack)
    {
        var n = weight.Length;
        var perPack = n / packs;
        if (perPack == 1)
        {
            for (var i = 0; i < n; i++)
            {
                packIndex[i] = i;
                rankInPack[i] = 0;
            }

            return;
        }

        var order = DescendingOrder(weight);
        var packWeights = new float[packs];
        var packItems = new int[packs];
        var open = new PriorityQueue<int, (float Weight, int Pack)>(packs, LightestFirst.Instance);
        for (var p = 0; p < packs; p++)
        {
            open.Enqueue(p, (0f, p));
        }

        foreach (var item in order)
        {
            // A full pack leaves the heap for good, as EPLB's scan skips it from then on.
            var pack = open.Dequeue();
            packIndex[item] = pack;
            rankInPack[item] = packItems[pack];
            packWeights[pack] += weight[item];
            packItems[pack]++;
            if (packItems[pack] < perPack)
            {
                open.Enqueue(pack, (packWeights[pack], pack));
            }
        }
    }

    /// <summary>
    /// EPLB's <c>replicate_experts</c>: each extra replica goes to the expert with the largest load per
    /// replica (<c>argmax(weight / count)</c>, the lowest index on ties, as <c>torch.max</c> returns).
    /// </summary>
    /// <remarks>
    /// A heap ordered by (load per replica descending, index ascending) yields the same expert as EPLB's
    /// scan of all experts, in O(log n) per replica instead of O(n): only the chosen expert's key changes.
    /// </remarks>
    public static void ReplicateExperts(ReadOnlySpan<float> weight, Span<int> phy2log, Span<int> rank, Span<int> logcnt)
    {
        var numLog = weight.Length;
        var numPhy = phy2log.Length;
        for (var i = 0; i < numLog; i++)
        {
            phy2log[i] = i;
            rank[i] = 0;
            logcnt[i] = 1;
        }

        if (numPhy == numLog)
        {
            return;
        }

        var heap = new PriorityQueue<int, (float PerReplica, int Expert)>(numLog, HottestFirst.Instance);
        for (var i = 0; i < numLog; i++)
        {
            heap.Enqueue(i, (weight[i], i));
        }

        for (var i = numLog; i < numPhy; i++)
        {
            var expert = heap.Dequeue();
            phy2log[i] = expert;
            rank[i] = logcnt[expert];
            logcnt[expert]++;
            heap.Enqueue(expert, (weight[expert] / logcnt[expert], expert));
        }
    }

    /// <summary>
    /// EPLB's <c>rebalance_experts_hierarchical</c> for one layer: groups packed to nodes, experts
    /// replicated within each node, replicas packed to the node's GPUs. Global balancing is this with one
    /// group and one node, as EPLB's <c>rebalance_experts</c> calls it.
    /// </summary>
    /// <param name="load">The layer's loads, length E, already float32.</param>
    /// <param name="numPhysical">Physical slots, R.</param>
    /// <param name="numGroups">Expert groups, G (1 for the global policy).</param>
    /// <param name="numNodes">Nodes, N, dividing G (1 for the global policy).</param>
    /// <param name="numGpus">GPUs, P, a multiple of N dividing R.</param>
    /// <param name="phy2log">Out: the logical expert of each physical slot, length R.</param>
    /// <param name="phyrank">Out: which replica of its expert each slot holds, length R.</param>
    /// <param name="logcnt">Out: replicas per logical expert, length E.</param>
    public static void RebalanceLayer(
        ReadOnlySpan<float> load, int numPhysical, int numGroups, int numNodes, int numGpus, Span<int> phy2log, Span<int> phyrank, Span<int> logcnt)
    {
        var numLogical = load.Length;
        var groupSize = numLogical / numGroups;
        var groupsPerNode = numGroups / numNodes;
        var phyPerGpu = numPhysical / numGpus;
        var logPerNode = numLogical / numNodes;
        var phyPerNode = numPhysical / numNodes;

        // Step 1: pack groups to nodes. "mlog" numbers experts node by node, groups in packing order.
        var tokensPerGroup = new float[numGroups];
        for (var g = 0; g < numGroups; g++)
        {
            var sum = 0f;
            for (var k = 0; k < groupSize; k++)
            {
                sum += load[(g * groupSize) + k];
            }

            tokensPerGroup[g] = sum;
        }

        var groupPack = new int[numGroups];
        var groupRank = new int[numGroups];
        BalancedPacking(tokensPerGroup, numNodes, groupPack, groupRank);
        var log2mlog = new int[numLogical];
        var mlog2log = new int[numLogical];
        for (var g = 0; g < numGroups; g++)
        {
            for (var k = 0; k < groupSize; k++)
            {
                var mlog = (((groupPack[g] * groupsPerNode) + groupRank[g]) * groupSize) + k;
                log2mlog[(g * groupSize) + k] = mlog;
                mlog2log[mlog] = (g * groupSize) + k;
            }
        }

        var tokensPerMlog = new float[numLogical];
        for (var m = 0; m < numLogical; m++)
        {
            tokensPerMlog[m] = load[mlog2log[m]];
        }

        // Steps 2 and 3, node by node: replicate within the node, then pack its replicas to its GPUs.
        var phy2mlog = new int[phyPerNode];
        var rank = new int[phyPerNode];
        var mlogcnt = new int[numLogical];
        var tokensPerPhy = new float[phyPerNode];
        var packIndex = new int[phyPerNode];
        var rankInPack = new int[phyPerNode];
        var pphy2phy = new int[phyPerNode];
        for (var node = 0; node < numNodes; node++)
        {
            var nodeTokens = tokensPerMlog.AsSpan(node * logPerNode, logPerNode);
            var nodeCount = mlogcnt.AsSpan(node * logPerNode, logPerNode);
            ReplicateExperts(nodeTokens, phy2mlog, rank, nodeCount);

            for (var j = 0; j < phyPerNode; j++)
            {
                tokensPerPhy[j] = nodeTokens[phy2mlog[j]] / nodeCount[phy2mlog[j]];
            }

            BalancedPacking(tokensPerPhy, numGpus / numNodes, packIndex, rankInPack);
            for (var j = 0; j < phyPerNode; j++)
            {
                pphy2phy[(packIndex[j] * phyPerGpu) + rankInPack[j]] = j;
            }

            for (var k = 0; k < phyPerNode; k++)
            {
                var phy = pphy2phy[k];
                phy2log[(node * phyPerNode) + k] = mlog2log[phy2mlog[phy] + (node * logPerNode)];
                phyrank[(node * phyPerNode) + k] = rank[phy];
            }
        }

        for (var l = 0; l < numLogical; l++)
        {
            logcnt[l] = mlogcnt[log2mlog[l]];
        }
    }

    /// <summary>Indices by weight, heaviest first; equal weights in index order.</summary>
    private static int[] DescendingOrder(ReadOnlySpan<float> weight)
    {
        var order = new int[weight.Length];
        for (var i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        var keys = weight.ToArray();
        Array.Sort(order, (a, b) => keys[a] != keys[b] ? keys[b].CompareTo(keys[a]) : a.CompareTo(b));
        return order;
    }

    private sealed class LightestFirst : IComparer<(float Weight, int Pack)>
    {
        public static readonly LightestFirst Instance = new();

        public int Compare((float Weight, int Pack) x, (float Weight, int Pack) y) =>
            x.Weight != y.Weight ? x.Weight.CompareTo(y.Weight) : x.Pack.CompareTo(y.Pack);
    }

    private sealed class HottestFirst : IComparer<(float PerReplica, int Expert)>
    {
        public static readonly HottestFirst Instance = new();

        public int Compare((float PerReplica, int Expert) x, (float PerReplica, int Expert) y) =>
            x.PerReplica != y.PerReplica ? y.PerReplica.CompareTo(x.PerReplica) : x.Expert.CompareTo(y.Expert);
    }
}
