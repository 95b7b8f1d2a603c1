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

    /// <summary>The README's printed <c>phy2log</c>.</summary>
    internal static readonly int[][] PublishedPhy2Log =
    [
        [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
        [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
    ];
}
