using MoeGpuStats.Engines;

namespace MoeGpuStats.Device;

/// <summary>The whole state copied back, as a managed engine.</summary>
public sealed partial class DeviceRoutingStats
{
    /// <summary>The whole state staged on the device and copied back at once (one wait), as a managed <see cref="RoutingStats"/>.</summary>
    public RoutingStats Snapshot() => new(new ManagedRoutingEngine(_options, ReadState()));

    /// <summary>Copies from the device to the host the reads have made, each a wait for the stream (the tests pin them).</summary>
    internal int ReadWaits => _reader.Copies;

    /// <summary>The reader every read copies back through (tests hold a read at its copy).</summary>
    internal DeviceStateReader Reader => _reader;

    /// <summary>Every buffer staged and copied back at once (<see cref="DeviceStateReader.StageState"/>).</summary>
    internal RoutingState ReadState()
    {
        var (bytes, experts) = ReadBack(experts => _reader.StageState(_views, experts, _options, _readback.View, 0));
        var read = 0L;
        return DeviceStateReader.UnstageState(bytes, experts, _options, ref read);
    }
}
