using System.Runtime.InteropServices;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// One batch of ids in native memory: a step may hold up to 2^31 - 1 ids, more than a .NET array
/// holds (<see cref="Array.MaxLength"/>), and a span reaches them all.
/// </summary>
internal sealed unsafe class IdBuffer : IDisposable
{
    private int* _ids;

    private IdBuffer(int* ids, int length)
    {
        _ids = ids;
        Length = length;
    }

    public int Length { get; }

    public Span<int> Span => _ids is null ? throw new ObjectDisposedException(objectName: null, "The step's id buffer was freed.") : new(_ids, Length);

    /// <exception cref="OutOfMemoryException">The machine cannot lend that much memory.</exception>
    public static IdBuffer Allocate(int length) =>
        new((int*)NativeMemory.Alloc((nuint)Math.Max(length, 1), sizeof(int)), length);

    /// <summary>How much memory <paramref name="length"/> ids take, in the words of a message.</summary>
    public static string Describe(long length) => $"{length:N0} ids ({length * sizeof(int) / (1024.0 * 1024 * 1024):F1} GiB)";

    public void Dispose()
    {
        NativeMemory.Free(_ids);
        _ids = null;
    }
}
