using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Interop;
using static System.FormattableString;

namespace MoeGpuStats.Device;

/// <summary>
/// A copy of device bytes to the host that the host can poll instead of waiting for. On CUDA the copy is
/// enqueued on the stream into page-locked memory (a copy into pageable memory would make the host wait)
/// and an event recorded behind it, which <see cref="IsCompleted"/> queries. ILGPU gives no event to query
/// elsewhere: there the copy is made at once (<see cref="CopyAtBegin"/>), which on ILGPU's CPU accelerator
/// (whose launches run to their end as they are enqueued) costs no wait, and on OpenCL waits for the stream.
/// </summary>
internal sealed class PendingCopy : IDisposable
{
    private readonly Accelerator _accelerator;
    private readonly PageLockedPool _pool;
    private readonly PageLockedArray1D<byte>? _pinned;
    private readonly IntPtr _context;
    private readonly IntPtr _event;
    private byte[]? _bytes;
    private bool _started;
    private bool _disposed;

    /// <summary>
    /// Host memory for a copy of <paramref name="length"/> bytes from <paramref name="accelerator"/>, taken before
    /// the copy is enqueued, so that the caller allocates outside its lock: on CUDA page-locked, from <paramref name="pool"/>.
    /// </summary>
    public PendingCopy(Accelerator accelerator, long length, PageLockedPool pool)
    {
        _accelerator = accelerator;
        _pool = pool;
        if (accelerator is CudaAccelerator cuda)
        {
            _pinned = pool.Rent(length);
            _context = cuda.NativePtr;
            try
            {
                _event = CudaDriver.CreateEvent(_context);
            }
            catch
            {
                pool.Return(_pinned);
                throw;
            }
        }
        else
        {
            _bytes = new byte[length];
        }
    }

    /// <summary>
    /// On CUDA enqueues the copy of <paramref name="source"/> (as long as the memory allocated for it) on
    /// <paramref name="reader"/>'s stream, behind the work enqueued before it, and returns at once; elsewhere
    /// only checks the length: the caller then copies with <see cref="CopyAtBegin"/>, its model's lock released.
    /// </summary>
    public void Start(DeviceStateReader reader, ArrayView<byte> source)
    {
        Disposed.ThrowIf(_disposed, nameof(PendingModelRead));

        // ILGPU copies as many bytes as the page-locked memory holds, whatever the view's length: the two must agree.
        var length = _pinned?.Length ?? _bytes!.Length;
        if (source.Length != length)
        {
            throw new InvalidOperationException(Invariant($"A copy of {source.Length} bytes into host memory allocated for {length}."));
        }

        if (_pinned is not null)
        {
            source.CopyToPageLockedAsync(reader.Stream, _pinned);
            try
            {
                CudaDriver.Record(_event, ((CudaStream)reader.Stream).StreamPtr, _context);
            }
            catch
            {
                // No event to wait on: the copy must end before the buffer goes back to the pool.
                reader.Stream.Synchronize();
                throw;
            }

            _started = true;
        }
    }

    /// <summary>
    /// Where ILGPU gives no event (off CUDA), the copy <see cref="Start"/> checked, made now: a wait for the stream on
    /// OpenCL, which the caller makes with its model's lock released (holding only what keeps <paramref name="source"/> its own).
    /// Nothing on CUDA.
    /// </summary>
    public void CopyAtBegin(DeviceStateReader reader, ArrayView<byte> source)
    {
        Disposed.ThrowIf(_disposed, nameof(PendingModelRead));
        if (_pinned is null && !_started)
        {
            reader.ToHost(source, _bytes);
            _started = true;
        }
    }

    /// <summary>Whether the copy has reached the host; never waits.</summary>
    /// <exception cref="ObjectDisposedException">The copy, or its accelerator before the copy was seen to end, was disposed.</exception>
    public bool IsCompleted
    {
        get
        {
            Disposed.ThrowIf(_disposed, nameof(PendingModelRead));
            if (_bytes is not null)
            {
                return _started;
            }

            ThrowIfAcceleratorGone();
            return _started && CudaDriver.HasCompleted(_event, _context);
        }
    }

    /// <summary>The bytes copied, once the copy has reached the host (a wait on the host until then).</summary>
    /// <exception cref="ObjectDisposedException">As <see cref="IsCompleted"/>.</exception>
    public byte[] Wait()
    {
        Disposed.ThrowIf(_disposed, nameof(PendingModelRead));
        if (_bytes is null)
        {
            ThrowIfAcceleratorGone();
            CudaDriver.WaitFor(_event, _context);
            _bytes = _pinned!.GetArray();
        }

        return _bytes;
    }

    /// <summary>
    /// Hands the page-locked memory back to the pool and frees the event, after the copy has ended: the device
    /// must not write into memory another copy reuses. With the accelerator gone, its context took both with it.
    /// </summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (_pinned is null || _accelerator.IsDisposed)
        {
            return;
        }

        if (_started)
        {
            CudaDriver.WaitFor(_event, _context);
        }

        CudaDriver.DestroyEvent(_event);
        _pool.Return(_pinned);
    }

    private void ThrowIfAcceleratorGone()
    {
        if (_accelerator.IsDisposed)
        {
            throw Disposed.Error(Invariant($"The accelerator '{_accelerator.Name}' was disposed before the read's copy back was seen to end."));
        }
    }
}
