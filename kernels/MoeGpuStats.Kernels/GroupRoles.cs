namespace MoeGpuStats.Kernels;

/// <summary>Which thread of a group takes a one-thread task, so that independent tasks run in different warps at once.</summary>
/// <remarks>
/// A constant 32 (an NVIDIA warp), not ILGPU's <c>Warp.WarpSize</c>: the roles only spread tasks
/// over warps, any thread would be correct, and ILGPU's OpenCL C reads the warp size through
/// <c>get_sub_group_size()</c>. With that read in both kernels, PoCL 5's CPU device corrupted the
/// host heap in the record kernel and left the query's result fields unwritten (H100 machine,
/// 2026-11-26), as if no thread had matched a role.
/// </remarks>
internal static class GroupRoles
{
    private const int WarpSize = 32;

    /// <summary>The first thread of warp <paramref name="warp"/>, or the group's last thread where the group is smaller.</summary>
    public static int FirstThreadOfWarp(int warp, int groupSize)
    {
        var first = warp * WarpSize;
        return first < groupSize ? first : groupSize - 1;
    }
}
