using ILGPU.Runtime;

namespace MoeGpuStats.Device;

/// <summary>
/// Page-locked host buffers that an engine's pending copies (<see cref="PendingCopy"/>) reuse: locking pages
/// takes the driver's time (<c>cuMemHostRegister</c>), so a server that begins a read every few steps pays it
/// for its first reads alone. Keeps at most <see cref="Kept"/> free buffers; a buffer of another length, or one
/// handed back after the pool was disposed, is freed instead. Thread-safe.
/// </summary>
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
            ObjectDisposedException.ThrowIf(_disposed, this);
            while (_free.TryPop(out var buffer))
            {
                if (buffer.Length == length)
                {
                    return buffer;
                }

                buffer.Dispose();
            }
        }

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

        buffer.Dispose();
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
                    buffer.Dispose();
                }
            }
        }
    }
}
