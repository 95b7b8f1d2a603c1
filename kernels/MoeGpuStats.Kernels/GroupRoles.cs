using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary>Which thread of a group takes a one-thread task, so that independent tasks run in different warps at once.</summary>
internal static class GroupRoles
{
    /// <summary>The first thread of warp <paramref name="warp"/>, or the group's last thread where the group is smaller.</summary>
    public static int FirstThreadOfWarp(int warp, int groupSize)
    {
        var first = warp * Warp.WarpSize;
        return first < groupSize ? first : groupSize - 1;
    }
}
