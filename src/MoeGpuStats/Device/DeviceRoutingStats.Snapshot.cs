using MoeGpuStats.Engines;

namespace MoeGpuStats.Device;

/// <summary>The whole state copied back, as a managed engine.</summary>
public sealed partial class DeviceRoutingStats
{
    /// <summary>The whole state staged on the device and copied back at once (one wait), as a managed <see cref="RoutingStats"/>.</summary>
    public RoutingStats Snapshot() => new(new ManagedRoutingEngine(_options, ReadState()));

    /// <summary>Copies from the device to the host the reads have made, each a wait for the stream (the tests pin them).</summary>
    internal int ReadWaits => _reader.Copies;

    /// <summary>Every buffer staged and copied back on the stream (<see cref="DeviceStateReader.ReadState"/>).</summary>
    internal RoutingState ReadState()
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            FoldPending();
            return _reader.ReadState(_views, _experts, _options, _readback.View);
        }
    }
}
