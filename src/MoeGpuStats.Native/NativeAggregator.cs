using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Interop;

namespace MoeGpuStats.Native;

/// <summary>One C handle: the statistics, their device objects, and the cached wrapper of the caller's buffer.</summary>
internal sealed class NativeAggregator : INativeHandle
{
    private readonly RoutingStats _stats;
    private readonly DeviceRoutingStats? _device;
    private readonly NativeDevice? _accelerator;
    private readonly CudaStreamBridge? _bridge;
    private readonly ForeignCache<int>? _ids;

    public NativeAggregator(string accelerator, RoutingStatsOptions options)
    {
        _accelerator = NativeDevice.Open(accelerator, device => OnDevice(device, options), out var built, AcceleratorSelection.ForeignMemoryBestFirst);
        if (_accelerator is null)
        {
            _stats = new RoutingStats(options);
            return;
        }

        (_device, _stats, _bridge) = built;
        _ids = new ForeignCache<int>(_accelerator, Kind, "ids");
    }

    public Lock Gate { get; } = new();

    /// <remarks>
    /// The same lock: a single layer's live lists on the managed engine (<c>moegs_expert_counts</c>) are read
    /// without a lock of the engine's, so the handle's reads stay serialized with its records.
    /// </remarks>
    public Lock ReadGate => Gate;

    public bool Disposed { get; private set; }

    /// <summary>Where the statistics live, in the C API's words: "cuda", "opencl", "cpu" or "managed".</summary>
    public string Kind => _stats.Backend;

    /// <summary>ILGPU's CUDA context current until the scope ends, then the caller's again (see <see cref="CudaContextScope"/>).</summary>
    public CudaContextScope EnterDevice() => _accelerator?.Enter() ?? default;

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

        var view = readable == 0 ? default : _ids!.Wrap(ids, readable);
        var ordered = NativeDevice.WaitForProducer(_bridge, stream);
        using (EnterDevice())
        {
            _stats.RecordRouting(view, tokens, topK, loadBalanceLoss, routerZLoss);
            NativeDevice.WaitUntilCallersMemoryIsRead(Kind, _device.Stream);
        }

        if (ordered)
        {
            _bridge!.SignalConsumer(stream);
        }
    }

    public void Dispose()
    {
        Disposed = true;
        Disposal.All(_ids, _bridge, _stats, _accelerator);
    }

    private static (DeviceRoutingStats, RoutingStats, CudaStreamBridge?) OnDevice(Accelerator accelerator, RoutingStatsOptions options)
    {
        var device = new DeviceRoutingStats(accelerator, options);
        try
        {
            return (device, RoutingStats.OnDevice(device), accelerator.AcceleratorType == AcceleratorType.Cuda ? new CudaStreamBridge(device) : null);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }
}

/// <summary>The requested accelerator is not present.</summary>
internal sealed class NoDeviceException(string message) : Exception(message);
