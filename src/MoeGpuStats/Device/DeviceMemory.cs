using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;
using static System.FormattableString;

namespace MoeGpuStats.Device;

/// <summary>Device allocation whose failure says what was asked for and why.</summary>
internal static class DeviceMemory
{
    public static MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(Accelerator accelerator, long length, string purpose)
        where T : unmanaged
    {
        try
        {
            RefuseBeyondHostMemory(accelerator, length * (long)Unsafe.SizeOf<T>());
            return accelerator.Allocate1D<T>(length);
        }
        catch (Exception exception) when (exception is OutOfMemoryException or AcceleratorException or ArgumentOutOfRangeException or OverflowException)
        {
            var bytes = length * Unsafe.SizeOf<T>();
            throw new InsufficientMemoryException(
                Invariant($"Could not allocate {bytes:N0} bytes ({length:N0} values of {Unsafe.SizeOf<T>()} bytes) on '{accelerator.Name}' for {purpose}."),
                exception);
        }
    }

    /// <summary>
    /// Refuses, on an accelerator that lends host memory (<see cref="TakesHostMemory"/>), a state of
    /// <paramref name="bytes"/> in all that is more than the memory the process has left: each buffer's own check
    /// (<see cref="Allocate"/>) passes buffers that only together pass it, where they are zeroed after the last is made.
    /// </summary>
    /// <exception cref="InsufficientMemoryException">The state is larger than the memory left; the message gives both.</exception>
    public static void CheckHostMemory(Accelerator accelerator, long bytes, string purpose)
    {
        try
        {
            RefuseBeyondHostMemory(accelerator, bytes);
        }
        catch (OutOfMemoryException exception)
        {
            throw new InsufficientMemoryException(Invariant($"Could not allocate {bytes:N0} bytes on '{accelerator.Name}' for {purpose}."), exception);
        }
    }

    /// <summary>
    /// ILGPU's CPU accelerator and an OpenCL device that is a CPU (PoCL's) take their buffers from host memory the
    /// system lends past what it has (overcommit), and the zeroing that follows touches every page: past the machine's
    /// or its container's limit the kernel kills the process, where an allocation should fail. So a buffer larger than
    /// the memory the process has left under that limit (the GC's <see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/>,
    /// which honours a container's) is refused first.
    /// </summary>
    private static void RefuseBeyondHostMemory(Accelerator accelerator, long bytes)
    {
        if (!TakesHostMemory(accelerator))
        {
            return;
        }

        var left = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes - Environment.WorkingSet;
        if (bytes > left)
        {
            throw new OutOfMemoryException(Invariant($"{bytes:N0} bytes are more than the {Math.Max(left, 0):N0} this process has left of the host's memory."));
        }
    }

    /// <summary>Whether the accelerator's buffers are host memory: ILGPU's CPU accelerator, or an OpenCL CPU device.</summary>
    internal static bool TakesHostMemory(Accelerator accelerator) =>
        accelerator.AcceleratorType == AcceleratorType.CPU
        || (accelerator is CLAccelerator device && device.DeviceType.HasFlag(CLDeviceType.CL_DEVICE_TYPE_CPU));

    /// <summary>
    /// Copies <paramref name="source"/> into <paramref name="target"/> (as long) on <paramref name="stream"/>
    /// and waits for it, so the caller may reuse <paramref name="source"/> at once: ILGPU's
    /// <c>CopyFromCPU(stream, span)</c> as it runs under a context's default page locking. Under
    /// <c>ContextBuilder.PageLocking(PageLockingMode.Aggressive)</c> ILGPU 1.5.3 enqueues that copy on the
    /// accelerator's default stream instead (<c>CopyFromCPUUnsafeAsync</c> calls <c>CopyFromPageLockedAsync</c>
    /// without the stream), unordered with the statistics' stream on CUDA: a launch could read the buffer
    /// before the copy lands, or the copy overwrite ids a pending launch still reads. It waits for the stream
    /// before the copy too, as <see cref="DeviceStateReader.ToHost"/> does: CUDA synchronizes the stream itself
    /// before a copy from pageable memory, and a launch from another thread onto a stream held so waited for
    /// the queue in the reads' case (this direction is unmeasured); the explicit wait costs nothing the copy
    /// would not.
    /// </summary>
    public static unsafe void CopyFromHost<T>(AcceleratorStream stream, ArrayView<T> target, ReadOnlySpan<T> source)
        where T : unmanaged
    {
        if (source.Length != target.Length)
        {
            throw new ArgumentException(Invariant($"{source.Length} values for a view of {target.Length}."), nameof(source));
        }

        if (source.IsEmpty)
        {
            return;
        }

        stream.Synchronize();
        fixed (T* values = source)
        {
            using var host = ILGPU.Runtime.CPU.CPUMemoryBuffer.Create(stream.Accelerator, values, source.Length);
            host.AsArrayView<T>(0, source.Length).CopyTo(stream, target);
            stream.Synchronize();
        }
    }

    /// <summary>
    /// Whether the accelerator, or the stream that orders the statistics' work, was disposed: ILGPU frees
    /// every buffer of an accelerator with it, so work enqueued after that would touch freed memory
    /// (ILGPU's CPU accelerator ends the process on it).
    /// </summary>
    public static bool IsGone(Accelerator accelerator, AcceleratorStream stream) => accelerator.IsDisposed || stream.IsDisposed;

    /// <summary>
    /// Waits for the work enqueued on <paramref name="stream"/> before a dispose frees the state, unless
    /// the accelerator or the stream is gone: then there is nothing left to wait for, and the buffers went
    /// with the accelerator (disposing them again is a no-op).
    /// </summary>
    public static void FinishUnlessGone(Accelerator accelerator, AcceleratorStream stream)
    {
        if (!IsGone(accelerator, stream))
        {
            stream.Synchronize();
        }
    }

    /// <summary>
    /// Throws <see cref="ObjectDisposedException"/> when <see cref="IsGone"/>, in words that fit every public
    /// type on a device (a <see cref="RoutingStats"/> on a device holds a <see cref="DeviceRoutingStats"/>).
    /// </summary>
    /// <param name="accelerator">The accelerator that holds the state.</param>
    /// <param name="stream">The stream the state's work is ordered on.</param>
    public static void ThrowIfGone(Accelerator accelerator, AcceleratorStream stream)
    {
        if (accelerator.IsDisposed)
        {
            throw Disposed.Error(Invariant($"The accelerator '{accelerator.Name}' that holds these statistics was disposed, which freed their state; dispose the statistics before their accelerator."));
        }

        if (stream.IsDisposed)
        {
            throw Disposed.Error("The stream these statistics are ordered on was disposed; dispose the statistics before the stream given to them.");
        }
    }

    /// <summary>
    /// Checks the accelerator and stream a constructor was given: neither disposed, and the stream one
    /// of that accelerator's (a stream of another accelerator orders nothing with its work; on CUDA
    /// another context's stream cannot take its launches).
    /// </summary>
    /// <exception cref="ArgumentException">The accelerator or stream was disposed, or the stream belongs to another accelerator.</exception>
    public static void CheckConstructorArguments(Accelerator accelerator, AcceleratorStream? stream)
    {
        if (accelerator.IsDisposed)
        {
            throw new ArgumentException(Invariant($"accelerator '{accelerator.Name}' was disposed; pass a live accelerator."), nameof(accelerator));
        }

        if (stream is null)
        {
            return;
        }

        if (stream.IsDisposed)
        {
            throw new ArgumentException("stream was disposed; pass a live stream of the accelerator, or null for a stream of the statistics' own.", nameof(stream));
        }

        if (stream.Accelerator != accelerator)
        {
            var other = stream.Accelerator.Name == accelerator.Name
                ? Invariant($"another '{accelerator.Name}' accelerator object than the one given")
                : Invariant($"'{stream.Accelerator.Name}', not to the accelerator given ('{accelerator.Name}')");
            throw new ArgumentException(
                Invariant($"stream belongs to {other}; pass a stream of that accelerator, or null for a stream of the statistics' own."),
                nameof(stream));
        }
    }
}
