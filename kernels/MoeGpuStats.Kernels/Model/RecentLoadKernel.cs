using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Kernels.Model;

/// <summary>
/// Each expert's slots over the newest steps of a model's window ring: a shorter horizon than the
/// window's running sum, read from the same ring (SGLang logs balancedness over the last 10, 100
/// and 1,000 passes). One thread per (layer, expert); the window ring's position comes from the device's
/// step control, so nothing about the ring goes through the host.
/// </summary>
internal static class RecentLoadKernel
{
    /// <summary>
    /// Entry <c>index</c> of <paramref name="load"/> (<c>[layers, experts]</c>) becomes the sum of that
    /// entry over the <paramref name="steps"/> rows of <paramref name="ring"/> (<c>[window, layers,
    /// experts]</c>) before the position the next step writes, newest first.
    /// </summary>
    /// <param name="index">The entry, <c>layer × experts + expert</c>.</param>
    /// <param name="ring">The window's ring of step counts.</param>
    /// <param name="control">The model's step control (<see cref="ModelStateLayout"/>), folded up to date.</param>
    /// <param name="window">The ring's rows.</param>
    /// <param name="steps">Rows to sum, 0 to <paramref name="window"/>: at most the steps the ring holds since a reset.</param>
    /// <param name="load">The sums, <c>[layers, experts]</c>.</param>
    internal static void Kernel(Index1D index, ArrayView<uint> ring, ArrayView<int> control, int window, int steps, ArrayView<ulong> load)
    {
        if (index >= load.Length)
        {
            return;
        }

        var row = control[ModelStateLayout.WindowPosition];
        var sum = 0UL;
        for (var s = 0; s < steps; s++)
        {
            row = row == 0 ? window - 1 : row - 1;
            sum += ring[(row * load.Length) + index];
        }

        load[index] = sum;
    }

    /// <summary>Loads the kernel on <paramref name="accelerator"/>.</summary>
    public static Action<AcceleratorStream, Index1D, ArrayView<uint>, ArrayView<int>, int, int, ArrayView<ulong>> Create(Accelerator accelerator) =>
        accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<uint>, ArrayView<int>, int, int, ArrayView<ulong>>(Kernel);
}
