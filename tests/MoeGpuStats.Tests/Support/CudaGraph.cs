using System.Runtime.InteropServices;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Tests.Support;

/// <summary>
/// A CUDA graph captured from the work one call enqueues on a stream, instantiated for replay, as a
/// serving stack captures its forward pass (vLLM's decode graphs): through the CUDA driver, which
/// ILGPU does not expose.
/// </summary>
internal sealed partial class CudaGraph : IDisposable
{
    private const string Library = "libcuda.so.1";

    /// <summary>CU_STREAM_CAPTURE_MODE_RELAXED: the capture does not refuse other threads' unsafe calls (the test runner's).</summary>
    private const int CaptureModeRelaxed = 2;

    private readonly IntPtr _context;
    private readonly IntPtr _graph;
    private readonly IntPtr _executable;

    private CudaGraph(IntPtr context, IntPtr graph, IntPtr executable)
    {
        _context = context;
        _graph = graph;
        _executable = executable;
    }

    /// <summary>Captures what <paramref name="enqueue"/> enqueues on <paramref name="stream"/> (nothing runs) and instantiates it.</summary>
    public static CudaGraph Capture(CudaAccelerator accelerator, CudaStream stream, Action enqueue) =>
        Capture(accelerator.NativePtr, stream.StreamPtr, enqueue);

    /// <summary>
    /// Captures what <paramref name="enqueue"/>, called with <paramref name="context"/> current,
    /// enqueues on <paramref name="stream"/> (a stream of that context) and instantiates it.
    /// </summary>
    public static CudaGraph Capture(IntPtr context, IntPtr stream, Action enqueue)
    {
        InContext(context, () => Check(cuStreamBeginCapture_v2(stream, CaptureModeRelaxed), "cuStreamBeginCapture"));
        var ended = 0;
        var graph = IntPtr.Zero;
        try
        {
            InContext(context, enqueue);
        }
        finally
        {
            // Ended even where the call threw, so that the stream leaves capture mode; its exception is the one that propagates.
            InContext(context, () => ended = cuStreamEndCapture(stream, out graph));
        }

        Check(ended, "cuStreamEndCapture");
        var executable = IntPtr.Zero;
        var instantiated = 0;
        InContext(context, () => instantiated = cuGraphInstantiateWithFlags(out executable, graph, 0));
        if (instantiated != 0)
        {
            InContext(context, () => cuGraphDestroy(graph));
            Check(instantiated, "cuGraphInstantiateWithFlags");
        }

        return new CudaGraph(context, graph, executable);
    }

    /// <summary>Enqueues one replay of the graph on <paramref name="stream"/>.</summary>
    public void Launch(CudaStream stream) => Launch(stream.StreamPtr);

    /// <summary>Enqueues one replay of the graph on <paramref name="stream"/>, a stream of the graph's context.</summary>
    public void Launch(IntPtr stream) => InContext(_context, () => Check(cuGraphLaunch(_executable, stream), "cuGraphLaunch"));

    public void Dispose() => InContext(_context, () =>
    {
        cuGraphExecDestroy(_executable);
        cuGraphDestroy(_graph);
    });

    /// <summary>Runs <paramref name="call"/> with <paramref name="context"/> current, then makes the thread's previous context current again.</summary>
    private static void InContext(IntPtr context, Action call)
    {
        var previous = CudaDriver.CurrentContext();
        CudaDriver.MakeCurrent(context);
        try
        {
            call();
        }
        finally
        {
            CudaDriver.MakeCurrent(previous);
        }
    }

    private static void Check(int status, string call)
    {
        if (status != 0)
        {
            throw new InvalidOperationException($"{call} failed with CUDA error {status}.");
        }
    }

    [LibraryImport(Library)]
    private static partial int cuStreamBeginCapture_v2(IntPtr stream, int mode);

    [LibraryImport(Library)]
    private static partial int cuStreamEndCapture(IntPtr stream, out IntPtr graph);

    [LibraryImport(Library)]
    private static partial int cuGraphInstantiateWithFlags(out IntPtr executable, IntPtr graph, ulong flags);

    [LibraryImport(Library)]
    private static partial int cuGraphLaunch(IntPtr executable, IntPtr stream);

    [LibraryImport(Library)]
    private static partial int cuGraphExecDestroy(IntPtr executable);

    [LibraryImport(Library)]
    private static partial int cuGraphDestroy(IntPtr graph);
}
