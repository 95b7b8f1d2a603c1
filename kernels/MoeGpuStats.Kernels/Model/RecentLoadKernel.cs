using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Kernels.Model;

/// <summary>
/// Each expert's slots over the newest steps of a model's window ring: a shorter horizon than the
/// window's running sum, read from the same ring (SGLang logs balancedness over the last 10, 100
/// and 1,000 passes). One thread per (layer, expert); the ring's position and the steps it holds come
/// from the device's state, so nothing about the ring goes through the host.
/// </summary>
internal static class RecentLoadKernel
{
    /// <summary>
    /// Entry <c>index</c> of <paramref name="load"/> (<c>[layers, experts]</c>) becomes the sum of that
    /// entry over the newest <paramref name="steps"/> rows of <paramref name="ring"/> (<c>[window, layers,
    /// experts]</c>), those before the position the next step writes; where <paramref name="steps"/> covers
    /// every step the ring holds, the window's running sum <paramref name="windowLoad"/>, which equals it.
    /// </summary>
    /// <param name="index">The entry, <c>layer × experts + expert</c>.</param>
    /// <param name="ring">The window's ring of step counts.</param>
    /// <param name="control">The model's step control (<see cref="ModelStateLayout"/>), folded up to date.</param>
    /// <param name="blocks">The layers' state blocks, folded up to date: layer 0's routings are the steps since the last reset.</param>
    /// <param name="window">The ring's rows.</param>
    /// <param name="steps">Rows to sum, 1 to <paramref name="window"/>.</param>
    /// <param name="windowLoad">The window's running sum, <c>[layers, experts]</c>.</param>
    /// <param name="load">The sums, <c>[layers, experts]</c>.</param>
    internal static void Kernel(
        Index1D index, ArrayView<uint> ring, ArrayView<int> control, ArrayView<RoutingStateBlock> blocks, int window, int steps, ArrayView<ulong> windowLoad, ArrayView<ulong> load)
    {
        if (index >= load.Length)
        {
            return;
        }

        var held = blocks[0].TotalRoutings < (ulong)window ? (int)blocks[0].TotalRoutings : window;
        if (steps >= held)
        {
            load[index] = windowLoad[index];
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

    /// <summary>Loads the kernel on <paramref name="accelerator"/>; its launches hold the accelerator's <see cref="LaunchGate"/>.</summary>
    public static Action<AcceleratorStream, Index1D, ArrayView<uint>, ArrayView<int>, ArrayView<RoutingStateBlock>, int, int, ArrayView<ulong>, ArrayView<ulong>> Create(Accelerator accelerator)
    {
        var kernel = accelerator.LoadAutoGroupedKernel<Index1D, ArrayView<uint>, ArrayView<int>, ArrayView<RoutingStateBlock>, int, int, ArrayView<ulong>, ArrayView<ulong>>(Kernel);
        var gate = new LaunchGate(accelerator);
        return (stream, extent, ring, control, blocks, window, steps, windowLoad, load) =>
        {
            using var held = gate.Enter();
            kernel(stream, extent, ring, control, blocks, window, steps, windowLoad, load);
        };
    }
}
