using System.Runtime.InteropServices;
using ILGPU;

namespace MoeGpuStats.Kernels.Model;

/// <summary>
/// A step's ids as the model kernel reads them, whatever integer type the router wrote: each read
/// gives an int the counting bins (an id outside int's range reads as <see cref="int.MaxValue"/>,
/// an invalid id, never as a valid id its low bits happen to name).
/// </summary>
/// <remarks>
/// Routers write int32 (vLLM's and SGLang's top-k kernels), int64 (<c>torch.topk</c>) or int16 (vLLM's
/// routed-experts capture); reading each where it lies spares a step the cast's launch, memory and traffic.
/// The kernel is generic over these structs, as the single-layer record is over its counting, so
/// each type compiles to its own loads with nothing decided per id.
/// </remarks>
internal interface IModelIds
{
    /// <summary>Ids the view holds.</summary>
    long Length { get; }

    /// <summary>The id at <paramref name="index"/>, as an int.</summary>
    int this[long index] { get; }
}

/// <summary>Ids of type int32.</summary>
internal readonly struct Int32Ids(ArrayView<int> view) : IModelIds
{
    private readonly ArrayView<int> _view = view;

    public long Length => _view.Length;

    public int this[long index] => _view[index];
}

/// <summary>Ids of type int64; one outside int's range reads as <see cref="int.MaxValue"/>.</summary>
internal readonly struct Int64Ids(ArrayView<long> view) : IModelIds
{
    private readonly ArrayView<long> _view = view;

    public long Length => _view.Length;

    public int this[long index] => ToInt32(_view[index]);

    /// <summary>An int64 id as the kernel counts it: itself within int's range, else <see cref="int.MaxValue"/> (invalid).</summary>
    public static int ToInt32(long id) => id >= int.MinValue && id <= int.MaxValue ? (int)id : int.MaxValue;
}

/// <summary>Ids of type int16.</summary>
internal readonly struct Int16Ids(ArrayView<short> view) : IModelIds
{
    private readonly ArrayView<short> _view = view;

    public long Length => _view.Length;

    public int this[long index] => _view[index];
}

/// <summary>Host ids read as the kernel reads them, for the engines that count on the host.</summary>
internal static class HostIds
{
    /// <summary>
    /// <paramref name="ids"/> (int, long or short) into <paramref name="ints"/>, as long as the ids:
    /// int32 as they are, int64 through <see cref="Int64Ids.ToInt32"/>, int16 widened.
    /// </summary>
    public static void ToInts<T>(ReadOnlySpan<T> ids, Span<int> ints)
        where T : unmanaged
    {
        if (typeof(T) == typeof(long))
        {
            var wide = MemoryMarshal.Cast<T, long>(ids);
            for (var i = 0; i < wide.Length; i++)
            {
                ints[i] = Int64Ids.ToInt32(wide[i]);
            }
        }
        else if (typeof(T) == typeof(short))
        {
            var narrow = MemoryMarshal.Cast<T, short>(ids);
            for (var i = 0; i < narrow.Length; i++)
            {
                ints[i] = narrow[i];
            }
        }
        else
        {
            MemoryMarshal.Cast<T, int>(ids).CopyTo(ints);
        }
    }
}
