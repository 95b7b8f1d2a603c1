using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace MoeGpuStats.Interop;

/// <summary>
/// Makes a CUDA accelerator's context current on this thread for the scope, and the thread's
/// previous context current again when it ends. ILGPU works in a CUDA context of its own, binds it
/// to a thread once and leaves it current; a thread that also calls the CUDA runtime (PyTorch,
/// TorchSharp, ONNX Runtime) would then run those calls in ILGPU's context instead of the runtime's
/// primary one. Wrap the MoeGpuStats calls of such a thread in a scope:
/// <code>using (CudaContextScope.Enter(accelerator)) { stats.RecordRouting(view, tokens, k); }</code>
/// Off CUDA the scope does nothing, and no call here needs a CUDA driver. Create the accelerator inside a scope too (creation pushes
/// ILGPU's context), or call <see cref="RestoreAfterCreate"/> right after. Once a thread has its
/// own context back, every call that reaches ILGPU on it (records, reads, allocations, disposal)
/// belongs inside a scope: ILGPU still believes its context is current there and would not bind it.
/// </summary>
public readonly struct CudaContextScope : IDisposable
{
    private readonly IntPtr _caller;
    private readonly IntPtr _device;

    private CudaContextScope(IntPtr deviceContext)
    {
        _device = deviceContext;
        _caller = CudaDriver.CurrentContext();
        if (_caller != deviceContext)
        {
            CudaDriver.MakeCurrent(deviceContext);
        }
    }

    /// <summary>Makes <paramref name="accelerator"/>'s context current (on CUDA) until the scope is disposed.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="InvalidOperationException">The CUDA driver failed; the message names its error.</exception>
    public static CudaContextScope Enter(Accelerator accelerator)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        return accelerator is CudaAccelerator cuda ? new CudaContextScope(cuda.NativePtr) : default;
    }

    /// <summary>
    /// After a CUDA accelerator was created on this thread (which pushed its context), makes
    /// <paramref name="caller"/>, the context current before, current again.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="InvalidOperationException">The CUDA driver failed; the message names its error.</exception>
    public static void RestoreAfterCreate(Accelerator accelerator, IntPtr caller)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        if (accelerator is CudaAccelerator cuda)
        {
            CudaDriver.RestoreAfterCreate(cuda.NativePtr, caller);
        }
    }

    /// <summary>
    /// The calling thread's current CUDA context, to hand to <see cref="RestoreAfterCreate"/>: zero where it has none,
    /// where the process has not initialized CUDA, or where there is no CUDA driver (a machine without a GPU, where
    /// the same code then creates another accelerator and the scope does nothing).
    /// </summary>
    /// <exception cref="InvalidOperationException">The CUDA driver failed otherwise; the message names its error.</exception>
    public static IntPtr CurrentContext() => CudaDriver.CurrentContextIfAny();

    /// <summary>Makes the thread's previous context current again.</summary>
    public void Dispose()
    {
        if (_device != IntPtr.Zero && _caller != _device)
        {
            CudaDriver.MakeCurrent(_caller);
        }
    }
}
