using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Device;

/// <summary>The check that a caller's device view belongs to the accelerator of the statistics it is given to.</summary>
internal static class ViewAccelerator
{
    /// <summary>Throws unless <paramref name="view"/> lives on <paramref name="accelerator"/>.</summary>
    /// <param name="view">The caller's view (not empty).</param>
    /// <param name="accelerator">The statistics' accelerator.</param>
    /// <param name="name">The argument, as the caller wrote it.</param>
    /// <param name="owner">What holds the statistics: "engine", "model".</param>
    /// <exception cref="ArgumentException">The view lives on another accelerator; two accelerators of one kind share a name, so the message says so instead of naming it twice.</exception>
    public static void Check<T>(ArrayView<T> view, Accelerator accelerator, string name, string owner)
        where T : unmanaged
    {
        var other = view.GetAccelerator();
        if (other == accelerator)
        {
            return;
        }

        throw new ArgumentException(
            other?.Name == accelerator.Name
                ? $"{name} lives on another '{accelerator.Name}' accelerator than this {owner}'s: a view works only with the accelerator object that allocated it."
                : $"{name} lives on '{other?.Name}', not on this {owner}'s accelerator '{accelerator.Name}'.",
            name);
    }
}
