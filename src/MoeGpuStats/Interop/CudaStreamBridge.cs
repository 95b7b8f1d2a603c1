using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Device;
using static System.FormattableString;

namespace MoeGpuStats.Interop;

/// <summary>
/// Orders a device engine's work (a <see cref="DeviceRoutingStats"/>'s records, or a
/// <see cref="ModelRoutingStats"/>'s steps and reads) against a producer's CUDA stream with device-side
/// waits only: the engine's stream waits for what the producer enqueued so far (before a record, or
/// before a read of steps a CUDA graph replays on the producer's stream), and the producer's stream
/// waits for the engine's work (before it reuses the ids' buffer, or replays again). The host never waits.
/// </summary>
/// <remarks>
/// Events are created in the context of the stream they are recorded on (PyTorch's streams live in
/// the primary context, ILGPU's in its own); <c>cuStreamWaitEvent</c> accepts an event of another
/// context on the same device. A producer stream created in the engine's own context can instead
/// be the engine's stream: pass <c>cudaAccelerator.CreateStream(pointer, false)</c> to
/// <see cref="DeviceRoutingStats"/>. A zero stream handle means, as in CUDA, the default stream of
/// the calling thread's current context: call with the producer's context current (outside any
/// <see cref="CudaContextScope"/>). Dispose the bridge before the engine: once the engine's stream is
/// disposed (with the engine, where it was the engine's own) the bridge refuses to order.
/// </remarks>
public sealed class CudaStreamBridge : IDisposable
{
    private readonly CudaStream _engineStream;
    private readonly Dictionary<IntPtr, IntPtr> _events = [];
    private readonly Lock _lock = new();
    private bool _disposed;

    /// <summary>Creates a bridge for <paramref name="engine"/>, which must be on a CUDA accelerator.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="engine"/> is null.</exception>
    /// <exception cref="ArgumentException">The engine is not on CUDA, or was disposed (or its accelerator or stream).</exception>
    public CudaStreamBridge(DeviceRoutingStats engine)
        : this(Usable(engine, nameof(engine)).Stream, nameof(engine))
    {
    }

    /// <summary>
    /// Creates a bridge for <paramref name="model"/>, which must be on a CUDA accelerator: its steps
    /// (<c>RecordStep</c>) and reads (<see cref="ModelRoutingStats.BeginRead"/> among them) run on its stream, which the bridge
    /// orders against the producer's, as C's <c>stream</c> arguments do.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> is null.</exception>
    /// <exception cref="ArgumentException">The model is not on CUDA, or was disposed (or its accelerator or stream).</exception>
    public CudaStreamBridge(ModelRoutingStats model)
        : this(
            Usable(model, nameof(model)).DeviceStream
                ?? throw new ArgumentException("model runs on the managed engine, not CUDA; create it with ModelRoutingStats.OnDevice on a CUDA accelerator.", nameof(model)),
            nameof(model))
    {
    }

    /// <summary><paramref name="engine"/>, refused where it is null or cannot be used: a bridge on its freed stream would fail at its first wait.</summary>
    private static DeviceRoutingStats Usable(DeviceRoutingStats? engine, string name) =>
        (engine ?? throw new ArgumentNullException(name)).Gone() is { } gone ? throw Disposed.ArgumentError(name, gone) : engine;

    /// <summary><paramref name="model"/>, refused where it is null or cannot be used.</summary>
    private static ModelRoutingStats Usable(ModelRoutingStats? model, string name) =>
        (model ?? throw new ArgumentNullException(name)).Gone() is { } gone ? throw Disposed.ArgumentError(name, gone) : model;

    /// <summary>Creates a bridge for an engine ordered on <paramref name="engineStream"/>.</summary>
    /// <param name="engineStream">The stream the engine records on.</param>
    /// <param name="name">The caller's parameter, named by the exception.</param>
    /// <exception cref="ArgumentException">The stream is not a CUDA stream.</exception>
    internal CudaStreamBridge(AcceleratorStream engineStream, string name)
    {
        _engineStream = engineStream as CudaStream
            ?? throw new ArgumentException(Invariant($"{name} runs on {engineStream.Accelerator.AcceleratorType}, not CUDA; a stream bridge orders CUDA streams alone."), name);
    }

    /// <summary>Enqueues on the engine's stream a wait for all work enqueued so far on <paramref name="producerStream"/>.</summary>
    /// <exception cref="ArgumentException">The handle is not a CUDA stream.</exception>
    /// <exception cref="ObjectDisposedException">The bridge, or the engine's stream or accelerator, was disposed.</exception>
    /// <exception cref="InvalidOperationException">The CUDA driver failed otherwise (an earlier launch's fault among them).</exception>
    public void WaitForProducer(IntPtr producerStream) => Order(producerStream, nameof(producerStream), _engineStream.StreamPtr, waiterName: null);

    /// <summary>Enqueues on the engine's stream a wait for an event the producer recorded.</summary>
    /// <exception cref="ArgumentException">The handle is zero, or CUDA refuses it as an event to wait for.</exception>
    /// <exception cref="ObjectDisposedException">The bridge, or the engine's stream or accelerator, was disposed.</exception>
    /// <exception cref="InvalidOperationException">The CUDA driver failed otherwise (an earlier launch's fault among them).</exception>
    public void WaitForProducerEvent(IntPtr producerEvent)
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            if (producerEvent == IntPtr.Zero)
            {
                throw new ArgumentException("producerEvent is 0x0; give an event the producer recorded (cuEventRecord, torch.cuda.Event.record).", nameof(producerEvent));
            }

            CudaDriver.Wait(_engineStream.StreamPtr, producerEvent, (nameof(producerEvent), producerEvent, "event"));
        }
    }

    /// <summary>Enqueues on <paramref name="consumerStream"/> a wait for every record enqueued so far on the engine.</summary>
    /// <exception cref="ArgumentException">CUDA refuses the handle as a stream to wait on.</exception>
    /// <exception cref="ObjectDisposedException">The bridge, or the engine's stream or accelerator, was disposed.</exception>
    /// <exception cref="InvalidOperationException">The CUDA driver failed otherwise (an earlier launch's fault among them).</exception>
    public void SignalConsumer(IntPtr consumerStream) => Order(_engineStream.StreamPtr, "the engine's stream", consumerStream, nameof(consumerStream));

    /// <summary>Destroys the bridge's events.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (var cudaEvent in _events.Values)
            {
                CudaDriver.DestroyEvent(cudaEvent);
            }
        }
    }

    /// <summary>
    /// Makes <paramref name="waiter"/> wait on the device for the work enqueued so far on <paramref name="producer"/>,
    /// a stream refused as the caller's <paramref name="producerName"/> where it is none; a wait CUDA refuses
    /// names the caller's <paramref name="waiterName"/> (null for the engine's own stream, which is known good).
    /// </summary>
    private void Order(IntPtr producer, string producerName, IntPtr waiter, string? waiterName)
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            var (cudaEvent, context) = EventFor(producer, producerName);
            CudaDriver.Record(cudaEvent, producer, context);
            CudaDriver.Wait(waiter, cudaEvent, waiterName is null ? null : (waiterName, waiter, "stream"));
        }
    }

    /// <summary>Throws if the bridge, or the engine's stream or accelerator, was disposed: the stream's handle would be a freed one.</summary>
    private void ThrowIfUnusable()
    {
        Disposed.ThrowIf(_disposed, nameof(CudaStreamBridge));
        if (_engineStream.IsDisposed || _engineStream.Accelerator.IsDisposed)
        {
            throw Disposed.Error("The stream of the engine this bridge orders was disposed (with the engine, or by its owner); dispose the bridge before the engine.");
        }
    }

    /// <summary>
    /// The bridge's event in <paramref name="stream"/>'s context (a NULL stream: the thread's current
    /// context, whose default stream it is), and that context; a stream that is none is refused as <paramref name="name"/>.
    /// </summary>
    private (IntPtr Event, IntPtr Context) EventFor(IntPtr stream, string name)
    {
        var context = CudaDriver.StreamContext(stream, name);
        if (!_events.TryGetValue(context, out var cudaEvent))
        {
            cudaEvent = CudaDriver.CreateEvent(context);
            _events[context] = cudaEvent;
        }

        return (cudaEvent, context);
    }
}
