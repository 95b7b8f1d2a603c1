using MoeGpuStats.Engines;

namespace MoeGpuStats.Device;

/// <summary>The whole state copied back, as a managed engine.</summary>
public sealed partial class DeviceRoutingStats
{
    /// <summary>One wait for the queued records and one copy of each state array, as a managed <see cref="RoutingStats"/>.</summary>
    public RoutingStats Snapshot() => new(new ManagedRoutingEngine(_options, ReadState()));

    /// <summary>Every buffer copied back on the stream (<see cref="DeviceStateReader.ReadState"/>).</summary>
    internal RoutingState ReadState()
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            FoldPending();
            return _reader.ReadState(_views, _experts, _options);
        }
    }
}
