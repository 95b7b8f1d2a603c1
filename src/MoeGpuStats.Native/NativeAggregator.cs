using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Native;

/// <summary>One C handle: the statistics, their device objects, and the cached wrapper of the caller's buffer.</summary>
internal sealed class NativeAggregator : IDisposable
{
    private readonly RoutingStats _stats;
    private readonly DeviceRoutingStats? _device;
    private readonly Context? _context;
    private readonly Accelerator? _accelerator;
    private readonly CudaStreamBridge? _bridge;
    private ForeignView<int>? _lastView;
    private (IntPtr Pointer, long Length) _lastBuffer;

    public NativeAggregator(string accelerator, RoutingStatsOptions options)
    {
        if (accelerator is "managed")
        {
            _stats = new RoutingStats(options);
            return;
        }

        AcceleratorType[] order = accelerator switch
        {
            "auto" => AcceleratorSelection.BestFirst,
            "cuda" => [AcceleratorType.Cuda],
            "opencl" => [AcceleratorType.OpenCL],
            "cpu" => [AcceleratorType.CPU],
            _ => throw new ArgumentException($"accelerator '{accelerator}' is not one of auto, cuda, opencl, cpu, managed.", nameof(accelerator)),
        };
        _context = Context.Create(builder => builder.Default());
        var device = order.Select(type => _context.Devices.FirstOrDefault(d => d.AcceleratorType == type)).FirstOrDefault(d => d is not null);
        if (device is null)
        {
            _context.Dispose();
            _context = null;
            if (accelerator is not "auto")
            {
                throw new NoDeviceException($"no {accelerator} accelerator on this machine.");
            }

            // The library's rule (AcceleratorSelection): no GPU, the managed engine.
            _stats = new RoutingStats(options);
            return;
        }

        var caller = device.AcceleratorType == AcceleratorType.Cuda ? CudaContextScope.CurrentContext() : IntPtr.Zero;
        _accelerator = device.CreateAccelerator(_context);
        try
        {
            _device = new DeviceRoutingStats(_accelerator, options);
            _stats = RoutingStats.OnDevice(_device);
            _bridge = _accelerator.AcceleratorType == AcceleratorType.Cuda ? new CudaStreamBridge(_device) : null;
        }
        catch
        {
            _device?.Dispose();
            _accelerator.Dispose();
            _context.Dispose();
            throw;
        }
        finally
        {
            // Creating a CUDA accelerator pushed ILGPU's context onto this thread: give the caller's back.
            CudaContextScope.RestoreAfterCreate(_accelerator, caller);
        }
    }

    public Lock Gate { get; } = new();

    /// <summary>Where the statistics live, in the C API's words: "cuda", "opencl", "cpu" or "managed".</summary>
    public string Kind => _stats.Backend;

    /// <summary>ILGPU's CUDA context current until the scope ends, then the caller's again (see <see cref="CudaContextScope"/>).</summary>
    public CudaContextScope EnterDevice() => _accelerator is null ? default : CudaContextScope.Enter(_accelerator);

    public RoutingStats Stats => _stats;

    /// <summary>
    /// Records from memory at <paramref name="ids"/>: device memory of the handle's GPU on CUDA/OpenCL,
    /// host memory on the CPU accelerator and the managed engine. With a CUDA stream, the engine waits on
    /// the device for the producer's work so far, and the producer's later work waits for this record.
    /// Every check (the arguments, then the wrap of the buffer) runs before the wait and the record, so
    /// a refused call leaves the statistics and the producer's stream as they were.
    /// </summary>
    public unsafe void Record(IntPtr ids, long length, int tokens, int topK, float loadBalanceLoss, float routerZLoss, IntPtr stream)
    {
        NativeChecks.Record(Kind, ids, length, tokens, topK, loadBalanceLoss, routerZLoss, stream);

        // A record reads tokens * top_k <= 2^31 - 1 ids: a longer buffer is viewed only that far.
        var readable = Math.Min(length, NativeChecks.MaxIdsPerRecord);
        if (_device is null)
        {
            _stats.RecordRouting(new ReadOnlySpan<int>((void*)ids, (int)readable), tokens, topK, loadBalanceLoss, routerZLoss);
            return;
        }

        var view = readable == 0 ? default : Wrap(ids, readable);

        // The bridge runs in the caller's context, where a NULL stream is the caller's default stream.
        var ordered = _bridge is not null && (stream != IntPtr.Zero || CudaContextScope.CurrentContext() != IntPtr.Zero);
        if (ordered)
        {
            try
            {
                _bridge!.WaitForProducer(stream);
            }
            catch (ArgumentException exception)
            {
                throw new NativeArgumentException($"stream: {NativeChecks.OneLine(exception)} Allowed: a CUstream of the calling thread's current context, or NULL.");
            }
        }

        using (EnterDevice())
        {
            _stats.RecordRouting(view, tokens, topK, loadBalanceLoss, routerZLoss);
        }

        if (ordered)
        {
            _bridge!.SignalConsumer(stream);
        }
    }

    public void Dispose()
    {
        _lastView?.Dispose();
        _bridge?.Dispose();
        _stats.Dispose();
        _accelerator?.Dispose();
        _context?.Dispose();
    }

    /// <summary>Servers record from the same buffer every step: reuse its wrapper, allocate nothing.</summary>
    private ArrayView<int> Wrap(IntPtr ids, long length)
    {
        if (_lastView is null || _lastBuffer != (ids, length))
        {
            ForeignView<int> view;
            try
            {
                using (EnterDevice())
                {
                    view = ForeignMemory.Wrap<int>(_accelerator!, ids, length);
                }
            }
            catch (ArgumentException exception)
            {
                var allowed = Kind switch
                {
                    "cuda" => "device memory of the handle's GPU",
                    "opencl" => "a cl_mem of the handle's context",
                    _ => "host memory",
                };
                throw new NativeArgumentException($"ids: {NativeChecks.OneLine(exception)} Allowed on {Kind}: {allowed}.");
            }

            _lastView?.Dispose();
            _lastView = view;
            _lastBuffer = (ids, length);
        }

        return _lastView.View;
    }
}

/// <summary>The requested accelerator is not present.</summary>
internal sealed class NoDeviceException(string message) : Exception(message);
