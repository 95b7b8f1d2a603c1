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
