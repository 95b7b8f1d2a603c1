using System.Runtime.InteropServices;
using static System.FormattableString;

namespace MoeGpuStats.Interop;

/// <summary>The few CUDA driver calls ILGPU does not expose: pointer checks, cross-stream events, events the host polls, the current context.</summary>
internal static partial class CudaDriver
{
    private const string Library = "libcuda.so.1";
    private const int PointerAttributeMemoryType = 2;
    private const int PointerAttributeDeviceOrdinal = 9;
    private const int MemoryTypeDevice = 2;
    private const int NotInitialized = 3;
    private const uint EventDisableTiming = 2;
    private const int NotReady = 600;
    private const int InvalidValue = 1;
    private const int InvalidHandle = 400;

    public static void CheckDevicePointer(IntPtr pointer, int deviceOrdinal, string paramName)
    {
        int memoryType = 0, ordinal = -1;
        var status = cuPointerGetAttribute(ref memoryType, PointerAttributeMemoryType, pointer);
        if (status != 0)
        {
            throw new ArgumentException(Invariant($"0x{pointer:x} is not memory CUDA knows (cuPointerGetAttribute: {Describe(status)})."), paramName);
        }

        if (memoryType != MemoryTypeDevice)
        {
            throw new ArgumentException(Invariant($"0x{pointer:x} is {(memoryType == 1 ? "host" : Invariant($"type-{memoryType}"))} memory, not device memory."), paramName);
        }

        Check(cuPointerGetAttribute(ref ordinal, PointerAttributeDeviceOrdinal, pointer), "cuPointerGetAttribute");
        if (ordinal != deviceOrdinal)
        {
            throw new ArgumentException(Invariant($"0x{pointer:x} lives on GPU {ordinal}; this accelerator is GPU {deviceOrdinal}."), paramName);
        }
    }

    /// <summary>The context a stream belongs to.</summary>
    public static IntPtr StreamContext(IntPtr stream, string paramName)
    {
        var status = cuStreamGetCtx(stream, out var context);
        return status == 0 ? context : throw new ArgumentException(Invariant($"0x{stream:x} is not a CUDA stream ({Describe(status)})."), paramName);
    }

    /// <summary>An event created in <paramref name="context"/> (events are recorded on streams of their own context).</summary>
    public static IntPtr CreateEvent(IntPtr context)
    {
        using var pushed = new PushedContext(context);
        Check(cuEventCreate(out var cudaEvent, EventDisableTiming), "cuEventCreate");
        return cudaEvent;
    }

    /// <summary>The calling thread's current CUDA context (zero when none).</summary>
    public static IntPtr CurrentContext()
    {
        Check(cuCtxGetCurrent(out var context), "cuCtxGetCurrent");
        return context;
    }

    /// <summary>
    /// <see cref="CurrentContext"/>, or zero where CUDA has no context to give: the driver is not initialized
    /// (<c>CUDA_ERROR_NOT_INITIALIZED</c>) or not installed.
    /// </summary>
    public static IntPtr CurrentContextIfAny()
    {
        try
        {
            var status = cuCtxGetCurrent(out var context);
            if (status == NotInitialized)
            {
                return IntPtr.Zero;
            }

            Check(status, "cuCtxGetCurrent");
            return context;
        }
        catch (DllNotFoundException)
        {
            return IntPtr.Zero;
        }
    }

    /// <summary>Makes <paramref name="context"/> current on the calling thread (zero pops the current one).</summary>
    public static void MakeCurrent(IntPtr context) => Check(cuCtxSetCurrent(context), "cuCtxSetCurrent");

    /// <summary>
    /// After <c>cuCtxCreate</c> pushed <paramref name="created"/> onto the thread's context stack, pops it
    /// and leaves <paramref name="caller"/> current, as the thread had it before.
    /// </summary>
    public static void RestoreAfterCreate(IntPtr created, IntPtr caller)
    {
        if (created != IntPtr.Zero && CurrentContext() == created)
        {
            Check(cuCtxPopCurrent_v2(out _), "cuCtxPopCurrent");
        }

        if (CurrentContext() != caller)
        {
            MakeCurrent(caller);
        }
    }

    /// <summary>Records <paramref name="cudaEvent"/> on <paramref name="stream"/>, with their <paramref name="context"/> current for the call.</summary>
    public static void Record(IntPtr cudaEvent, IntPtr stream, IntPtr context)
    {
        using var pushed = new PushedContext(context);
        Check(cuEventRecord(cudaEvent, stream), "cuEventRecord");
    }

    /// <summary>
    /// Makes <paramref name="stream"/> wait on the device, not the host, for <paramref name="cudaEvent"/> (any
    /// context of the same process). Where <paramref name="culprit"/> names the caller's argument that gave one of
    /// the two handles, CUDA's refusal of a handle is that argument's (only the driver checks the handle, so a good one
    /// costs nothing more); any other failure, such as an earlier launch's fault this call reports, stays the device's.
    /// </summary>
    public static void Wait(IntPtr stream, IntPtr cudaEvent, (string Name, IntPtr Handle, string Kind)? culprit)
    {
        var status = cuStreamWaitEvent(stream, cudaEvent, 0);
        if (status is InvalidValue or InvalidHandle && culprit is var (name, handle, kind))
        {
            throw new ArgumentException(Invariant($"{name} is 0x{handle:x}, which CUDA refuses (cuStreamWaitEvent: {Describe(status)}); give a live {kind} of this process."), name);
        }

        Check(status, "cuStreamWaitEvent");
    }

    public static void DestroyEvent(IntPtr cudaEvent) => cuEventDestroy_v2(cudaEvent);

    /// <summary>Whether the work before <paramref name="cudaEvent"/>'s record has finished, without waiting (<c>cuEventQuery</c>).</summary>
    public static bool HasCompleted(IntPtr cudaEvent, IntPtr context)
    {
        using var pushed = new PushedContext(context);
        var status = cuEventQuery(cudaEvent);
        if (status == NotReady)
        {
            return false;
        }

        Check(status, "cuEventQuery");
        return true;
    }

    /// <summary>Waits on the host for the work before <paramref name="cudaEvent"/>'s record (<c>cuEventSynchronize</c>).</summary>
    public static void WaitFor(IntPtr cudaEvent, IntPtr context)
    {
        using var pushed = new PushedContext(context);
        Check(cuEventSynchronize(cudaEvent), "cuEventSynchronize");
    }

    private static void Check(int status, string call)
    {
        if (status != 0)
        {
            throw new InvalidOperationException(Invariant($"{call} failed: {Describe(status)}."));
        }
    }

    private static string Describe(int status) =>
        cuGetErrorString(status, out var text) == 0 && text != IntPtr.Zero ? Invariant($"{Marshal.PtrToStringAnsi(text)} ({status})") : Invariant($"CUDA error {status}");

    [LibraryImport(Library)]
    private static partial int cuPointerGetAttribute(ref int data, int attribute, IntPtr pointer);

    [LibraryImport(Library)]
    private static partial int cuStreamGetCtx(IntPtr stream, out IntPtr context);

    [LibraryImport(Library)]
    private static partial int cuCtxGetCurrent(out IntPtr context);

    [LibraryImport(Library)]
    private static partial int cuCtxSetCurrent(IntPtr context);

    [LibraryImport(Library)]
    private static partial int cuCtxPushCurrent_v2(IntPtr context);

    [LibraryImport(Library)]
    private static partial int cuCtxPopCurrent_v2(out IntPtr context);

    [LibraryImport(Library)]
    private static partial int cuEventCreate(out IntPtr cudaEvent, uint flags);

    [LibraryImport(Library)]
    private static partial int cuEventRecord(IntPtr cudaEvent, IntPtr stream);

    [LibraryImport(Library)]
    private static partial int cuStreamWaitEvent(IntPtr stream, IntPtr cudaEvent, uint flags);

    [LibraryImport(Library)]
    private static partial int cuEventDestroy_v2(IntPtr cudaEvent);

    [LibraryImport(Library)]
    private static partial int cuEventQuery(IntPtr cudaEvent);

    [LibraryImport(Library)]
    private static partial int cuEventSynchronize(IntPtr cudaEvent);

    [LibraryImport(Library)]
    private static partial int cuGetErrorString(int status, out IntPtr text);

    /// <summary>A context pushed as the thread's current one until disposed (a struct: no allocation per call).</summary>
    private readonly ref struct PushedContext
    {
        public PushedContext(IntPtr context) => Check(cuCtxPushCurrent_v2(context), "cuCtxPushCurrent");

        public void Dispose() => cuCtxPopCurrent_v2(out _);
    }
}
