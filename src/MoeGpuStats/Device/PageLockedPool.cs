using ILGPU.Runtime;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Device;

/// <summary>
/// Page-locked host buffers that an engine's pending copies (<see cref="PendingCopy"/>) reuse: locking pages
/// takes the driver's time (<c>cuMemHostRegister</c>), so a server that begins a read every few steps pays it
/// for its first reads alone. Keeps at most <see cref="Kept"/> free buffers; a buffer of another length, or one
/// handed back after the pool was disposed, is freed instead. Thread-safe.
/// </summary>
/// <remarks>
/// ILGPU 1.5.3 page-locks (<c>cuMemHostRegister</c>) and unlocks without binding its CUDA context: on a thread
/// where none is current the driver refuses, on one where the caller's is current the memory would be
/// registered there, and an unlock binds ILGPU's and leaves it current. The pool makes the accelerator's
/// context current around both (<see cref="CudaContextScope"/>), so the caller's is current again after.
/// </remarks>
internal sealed class PageLockedPool(Accelerator accelerator) : IDisposable
{
    /// <summary>Free buffers kept: a read in flight and the next one begun before its results are taken.</summary>
    public const int Kept = 2;

    private readonly Lock _lock = new();
    private readonly Stack<PageLockedArray1D<byte>> _free = new();
    private bool _disposed;

    /// <summary>A free buffer of <paramref name="length"/> bytes, or a new one.</summary>
    public PageLockedArray1D<byte> Rent(long length)
    {
        lock (_lock)
        {
            Disposed.ThrowIf(_disposed, nameof(ModelRoutingStats));
            while (_free.TryPop(out var buffer))
            {
                if (buffer.Length == length)
                {
                    return buffer;
                }

                Free(buffer);
            }
        }

        using var context = InContext();
        return accelerator.AllocatePageLocked1D<byte>(length);
    }

    /// <summary>Takes back a buffer no copy writes into any more; with the accelerator gone, its context took the buffer's page lock.</summary>
    public void Return(PageLockedArray1D<byte> buffer)
    {
        if (accelerator.IsDisposed)
        {
            return;
        }

        lock (_lock)
        {
            if (!_disposed && _free.Count < Kept)
            {
                _free.Push(buffer);
                return;
            }
        }

        Free(buffer);
    }

    /// <summary>Frees the free buffers (before the accelerator goes); buffers still rented are freed when handed back.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            while (_free.TryPop(out var buffer))
            {
                if (!accelerator.IsDisposed)
                {
                    Free(buffer);
                }
            }
        }
    }

    private void Free(PageLockedArray1D<byte> buffer)
    {
        using var context = InContext();
        buffer.Dispose();
    }

    /// <summary>The accelerator's CUDA context current until disposed, the caller's again after; nothing off CUDA.</summary>
    private CudaContextScope InContext() => CudaContextScope.Enter(accelerator);
}
