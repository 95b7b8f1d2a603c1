using BenchmarkDotNet.Attributes;
using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Bench;

/// <summary>Reads after 2,000 records of E experts: queries and snapshots on both engines.</summary>
[MemoryDiagnoser]
public class QueryBenchmarks
{
    private Context _context = null!;
    private Accelerator _accelerator = null!;
    private RoutingStats _managed = null!;
    private RoutingStats _device = null!;

    [Params(64, 256, 1024)]
    public int Experts { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _context = Context.Create(builder => builder.Default());
        _accelerator = _context.GetPreferredDevice(preferCPU: false).CreateAccelerator(_context);
        _managed = new RoutingStats();
        _device = RoutingStats.OnDevice(_accelerator);
        var random = new Random(5);
        for (var i = 0; i < 2000; i++)
        {
            var counts = new int[Experts];
            for (var e = 0; e < Experts; e++)
            {
                counts[e] = random.Next(512);
            }

            var decision = new RoutingDecision { ExpertCapacities = counts, TotalTokens = counts.Sum() / 8, LoadBalanceLoss = 0.5f };
            _managed.RecordRouting(decision);
            _device.RecordRouting(decision);
        }
    }

    [Benchmark(Baseline = true)]
    public float ManagedCvAndTrend() => _managed.UtilizationCv() + _managed.RecentLoadVarianceTrend(100);

    [Benchmark]
    public float DeviceCvAndTrend() => _device.UtilizationCv() + _device.RecentLoadVarianceTrend(100);

    [Benchmark]
    public ulong ManagedSnapshot()
    {
        using var snapshot = _managed.Snapshot();
        return snapshot.TotalRoutings;
    }

    [Benchmark]
    public ulong DeviceSnapshot()
    {
        using var snapshot = _device.Snapshot();
        return snapshot.TotalRoutings;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _device.Dispose();
        _accelerator.Dispose();
        _context.Dispose();
    }
}
