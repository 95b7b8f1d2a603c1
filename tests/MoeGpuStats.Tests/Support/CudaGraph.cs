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

    private readonly IntPtr _graph;
    private readonly IntPtr _executable;
    private readonly CudaAccelerator _accelerator;

    private CudaGraph(CudaAccelerator accelerator, IntPtr graph, IntPtr executable)
    {
        _accelerator = accelerator;
        _graph = graph;
        _executable = executable;
    }

    /// <summary>Captures what <paramref name="enqueue"/> enqueues on <paramref name="stream"/> (nothing runs) and instantiates it.</summary>
    public static CudaGraph Capture(CudaAccelerator accelerator, CudaStream stream, Action enqueue)
    {
        using (CudaContextScope.Enter(accelerator))
        {
            Check(cuStreamBeginCapture_v2(stream.StreamPtr, CaptureModeRelaxed), "cuStreamBeginCapture");
        }

        int ended;
        IntPtr graph;
        try
        {
            enqueue();
        }
        finally
        {
            // Ended even where the call threw, so that the stream leaves capture mode; its exception is the one that propagates.
            using (CudaContextScope.Enter(accelerator))
            {
                ended = cuStreamEndCapture(stream.StreamPtr, out graph);
            }
        }

        Check(ended, "cuStreamEndCapture");
        using (CudaContextScope.Enter(accelerator))
        {
            var instantiated = cuGraphInstantiateWithFlags(out var executable, graph, 0);
            if (instantiated != 0)
            {
                cuGraphDestroy(graph);
                Check(instantiated, "cuGraphInstantiateWithFlags");
            }

            return new CudaGraph(accelerator, graph, executable);
        }
    }

    /// <summary>Enqueues one replay of the graph on <paramref name="stream"/>.</summary>
    public void Launch(CudaStream stream)
    {
        using (CudaContextScope.Enter(_accelerator))
        {
            Check(cuGraphLaunch(_executable, stream.StreamPtr), "cuGraphLaunch");
        }
    }

    public void Dispose()
    {
        using (CudaContextScope.Enter(_accelerator))
        {
            cuGraphExecDestroy(_executable);
            cuGraphDestroy(_graph);
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
