namespace MoeGpuStats.Tests.Telemetry;

/// <summary>
/// The test classes that publish without a meter factory: their publishers share the process's one
/// <c>MoeGpuStats</c> meter, so a listener of it sees every live publisher; they run one at a time.
/// </summary>
[CollectionDefinition(nameof(SharedMeterCollection), DisableParallelization = true)]
public sealed class SharedMeterCollection;

/// <summary>A meter factory of a test's own: publishers created with it share a meter apart from the process's.</summary>
internal sealed class TestMeterFactory : System.Diagnostics.Metrics.IMeterFactory
{
    private readonly List<System.Diagnostics.Metrics.Meter> _created = [];

    public System.Diagnostics.Metrics.Meter Create(System.Diagnostics.Metrics.MeterOptions options)
    {
        var meter = new System.Diagnostics.Metrics.Meter(new System.Diagnostics.Metrics.MeterOptions(options.Name) { Version = options.Version, Tags = options.Tags, Scope = this });
        _created.Add(meter);
        return meter;
    }

    public void Dispose() => _created.ForEach(meter => meter.Dispose());
}
