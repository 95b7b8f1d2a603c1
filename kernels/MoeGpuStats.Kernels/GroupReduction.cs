using ILGPU;

namespace MoeGpuStats.Kernels;

/// <summary>Reductions over the threads of a group.</summary>
internal static class GroupReduction
{
    /// <summary>
    /// The sum of every thread's <paramref name="value"/>, returned to every thread of the group, by a
    /// tree in <paramref name="partials"/> (one entry per thread). Not a shared 64-bit atomic add: NVIDIA
    /// GPUs have none, and the compare-and-swap loop that replaces it serializes a group's 256 threads
    /// on one address (docs/performance.md gives what it cost).
    /// </summary>
    public static long Sum(long value, ArrayView<long> partials)
    {
        var thread = Group.IdxX;
        var groupSize = Group.DimX;
        partials[thread] = value;
        Group.Barrier();
        var stride = 1;
        while (stride * 2 < groupSize)
        {
            stride *= 2;
        }

        for (; stride > 0; stride /= 2)
        {
            if (thread < stride && thread + stride < groupSize)
            {
                partials[thread] += partials[thread + stride];
            }

            Group.Barrier();
        }

        var sum = partials[0];
        Group.Barrier();
        return sum;
    }
}
