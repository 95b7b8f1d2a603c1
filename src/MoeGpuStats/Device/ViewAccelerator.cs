using ILGPU;
using ILGPU.Runtime;
using static System.FormattableString;

namespace MoeGpuStats.Device;

/// <summary>The checks that a caller's device view can be read: its buffer alive, on the accelerator of the statistics it is given to.</summary>
internal static class ViewAccelerator
{
    /// <summary>
    /// Throws if <paramref name="view"/> is a view of a buffer that was disposed: a kernel or a copy
    /// would read freed memory (ILGPU's CPU accelerator ends the process on it).
    /// </summary>
    /// <param name="view">The caller's view; a default or empty one passes.</param>
    /// <param name="name">The argument, as the caller wrote it.</param>
    /// <exception cref="ArgumentException">The view's buffer was disposed.</exception>
    public static void CheckAlive<T>(ArrayView<T> view, string name)
        where T : unmanaged
    {
        if (view.IsValid && view.Length > 0 && BufferOf(view).IsDisposed)
        {
            throw new ArgumentException(Invariant($"{name} is a view of a buffer that was disposed; pass a view of a live buffer."), name);
        }
    }

    /// <summary>
    /// The view's buffer, through the interface ILGPU gives it on (its own property is not public); a
    /// constrained call on the struct, not a cast that boxes the view on every record.
    /// </summary>
    private static MemoryBuffer BufferOf<TView>(TView view)
        where TView : struct, IArrayView => view.Buffer;

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
                ? Invariant($"{name} lives on another '{accelerator.Name}' accelerator than this {owner}'s: a view works only with the accelerator object that allocated it.")
                : Invariant($"{name} lives on '{other?.Name}', not on this {owner}'s accelerator '{accelerator.Name}'."),
            name);
    }
}
