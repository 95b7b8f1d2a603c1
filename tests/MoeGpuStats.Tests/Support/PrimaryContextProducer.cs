using System.Runtime.InteropServices;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Tests.Support;

/// <summary>
/// A producer that uses the CUDA driver the way the CUDA runtime (and so PyTorch) does: device
/// memory allocated in the device's primary context, filled on that context's NULL stream. Not
/// ILGPU: an ILGPU accelerator playing the producer would rebind ILGPU's last accelerator after
/// each of its calls (ILGPU's scoped binding) and so change the thread's current context itself.
/// </summary>
internal sealed unsafe partial class PrimaryContextProducer : IDisposable
{
    private const string Library = "libcuda.so.1";
    private readonly int _device;
    private readonly IntPtr _previous;
    private readonly List<IntPtr> _streams = [];

    /// <summary>Retains GPU <paramref name="device"/>'s primary context, makes it current (until disposed) and allocates <paramref name="length"/> ints there.</summary>
    public PrimaryContextProducer(int device, long length)
    {
        _device = device;
        _previous = CudaDriver.CurrentContext();
        Check(cuDevicePrimaryCtxRetain(out var context, device), "cuDevicePrimaryCtxRetain");
        Context = context;
        CudaDriver.MakeCurrent(context);
        Check(cuMemAlloc_v2(out var pointer, (nuint)(length * sizeof(int))), "cuMemAlloc");
        Pointer = pointer;
        Length = length;
    }

    public IntPtr Context { get; }

    public IntPtr Pointer { get; }

    public long Length { get; }

    /// <summary>Enqueues on the current context's NULL stream a fill of every int with <paramref name="value"/>.</summary>
    public void Fill(uint value) => Check(cuMemsetD32Async(Pointer, value, (nuint)Length, IntPtr.Zero), "cuMemsetD32Async");

    /// <summary>A stream of the primary context (not the NULL stream, which no CUDA graph can capture), as PyTorch's side streams; destroyed with the producer.</summary>
    public IntPtr CreateStream()
    {
        Check(cuStreamCreate(out var stream, 0), "cuStreamCreate");
        _streams.Add(stream);
        return stream;
    }

    /// <summary>Copies <paramref name="values"/> into the memory from int <paramref name="at"/>, returning when the copy is done.</summary>
    public void Write(int[] values, long at)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(at + values.Length, Length);
        fixed (int* source = values)
        {
            Check(cuMemcpyHtoD_v2(Pointer + (nint)(at * sizeof(int)), (IntPtr)source, (nuint)(values.Length * sizeof(int))), "cuMemcpyHtoD");
        }
    }

    /// <summary>Waits on the host for the work enqueued on <paramref name="stream"/>.</summary>
    public static void Synchronize(IntPtr stream) => Check(cuStreamSynchronize(stream), "cuStreamSynchronize");

    /// <summary>Frees the memory (waiting for the context's work), releases the primary context and makes the thread's previous context current.</summary>
    public void Dispose()
    {
        CudaDriver.MakeCurrent(Context);
        cuCtxSynchronize();
        foreach (var stream in _streams)
        {
            cuStreamDestroy_v2(stream);
        }

        cuMemFree_v2(Pointer);
        CudaDriver.MakeCurrent(_previous);
        cuDevicePrimaryCtxRelease_v2(_device);
    }

    private static void Check(int status, string call)
    {
        if (status != 0)
        {
            throw new InvalidOperationException($"{call} failed with CUDA error {status}.");
        }
    }

    [LibraryImport(Library)]
    private static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);

    [LibraryImport(Library)]
    private static partial int cuDevicePrimaryCtxRelease_v2(int device);

    [LibraryImport(Library)]
    private static partial int cuCtxSynchronize();

    [LibraryImport(Library)]
    private static partial int cuMemAlloc_v2(out IntPtr pointer, nuint bytes);

    [LibraryImport(Library)]
    private static partial int cuMemFree_v2(IntPtr pointer);

    [LibraryImport(Library)]
    private static partial int cuMemsetD32Async(IntPtr pointer, uint value, nuint count, IntPtr stream);

    [LibraryImport(Library)]
    private static partial int cuStreamCreate(out IntPtr stream, uint flags);

    [LibraryImport(Library)]
    private static partial int cuStreamDestroy_v2(IntPtr stream);

    [LibraryImport(Library)]
    private static partial int cuStreamSynchronize(IntPtr stream);

    [LibraryImport(Library)]
    private static partial int cuMemcpyHtoD_v2(IntPtr destination, IntPtr source, nuint bytes);
}
