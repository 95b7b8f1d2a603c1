namespace MoeGpuStats.Tests.Support;

/// <summary>The example of DeepSeek's EPLB README, which the placement and <c>moegs plan</c> tests reproduce.</summary>
internal static class EplbExample
{
    /// <summary>The two-layer example of DeepSeek's EPLB README: 12 experts, 16 replicas, 4 groups, 2 nodes, 8 GPUs.</summary>
    internal static readonly long[,] PublishedLoads =
    {
        { 90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86 },
        { 20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27 },
    };

    /// <summary>
    /// <see cref="PublishedLoads"/> as recorded per slot of <see cref="PublishedPhy2Log"/>, as vLLM records per
    /// physical expert: a replicated expert's first slot takes three quarters of its load and its second the rest
    /// (no expert has more than two replicas here), unevenly, as a router that prefers one replica would.
    /// </summary>
    internal static long[,] PublishedSlotLoads()
    {
        var slots = new long[PublishedPhy2Log.Length, PublishedPhy2Log[0].Length];
        for (var layer = 0; layer < slots.GetLength(0); layer++)
        {
            var row = PublishedPhy2Log[layer];
            for (var p = 0; p < row.Length; p++)
            {
                var expert = row[p];
                var load = PublishedLoads[layer, expert];
                var replicas = row.Count(e => e == expert);
                var first = System.Array.IndexOf(row, expert) == p;
                slots[layer, p] = replicas == 1 ? load : first ? load * 3 / 4 : load - (load * 3 / 4);
            }
        }

        return slots;
    }

    /// <summary>The README's printed <c>phy2log</c>.</summary>
    internal static readonly int[][] PublishedPhy2Log =
    [
        [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
        [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
    ];
}
