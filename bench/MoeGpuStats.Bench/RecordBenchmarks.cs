using BenchmarkDotNet.Attributes;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Lab;

namespace MoeGpuStats.Bench;

/// <summary>
/// Recording a batch of top-k ids (k = 8) that lives in device memory: the device engine against
/// what a user does without this library (copy the ids to the host, then the managed loop), and
/// against ILGPU.Algorithms' histogram of the same ids (what a C# user of ILGPU writes: only the
/// counts, no statistics). Each device column includes waiting for its work, so that every column is complete work.
/// </summary>
[MemoryDiagnoser]
public class RecordBenchmarks
{
    private Context _context = null!;
    private Accelerator _accelerator = null!;
    private MemoryBuffer1D<int, Stride1D.Dense> _ids = null!;
    private DeviceRoutingStats _device = null!;
    private RoutingStats _managed = null!;
    private int[] _staging = null!;
    private AlgorithmsHistogram _algorithms = null!;
    private MemoryBuffer1D<int, Stride1D.Dense> _bins = null!;

    [Params(32 * 1024, 1024 * 1024, 16 * 1024 * 1024, 128 * 1024 * 1024)]
    public int Ids { get; set; }

    [Params(64, 256, 1024)]
    public int Experts { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _context = Context.Create(builder => builder.Default());
        _accelerator = _context.GetPreferredDevice(preferCPU: false).CreateAccelerator(_context);
        _ids = _accelerator.Allocate1D(RoutingIds.Skewed(Ids, Experts));
        var options = new RoutingStatsOptions { Experts = Experts };
        _device = new DeviceRoutingStats(_accelerator, options);
        _managed = new RoutingStats(options);
        _staging = new int[Ids];
        _algorithms = new AlgorithmsHistogram(_accelerator);
        _bins = _accelerator.Allocate1D<int>(Experts);
    }

    [Benchmark(Baseline = true)]
    public ulong CopyToHostThenManaged()
    {
        _ids.View.BaseView.CopyToCPU(_staging.AsSpan());
        _managed.RecordRouting(_staging, Ids / 8, 8);
        return _managed.TotalRoutings;
    }

    [Benchmark]
    public void DeviceEngine()
    {
        _device.RecordRouting(_ids.View, Ids / 8, 8);
        _device.Stream.Synchronize();
    }

    [Benchmark]
    public void AlgorithmsHistogramOfTheIds()
    {
        _bins.View.MemSetToZero(_accelerator.DefaultStream);
        _algorithms.Count(_accelerator.DefaultStream, _ids.View, _bins.View);
        _accelerator.DefaultStream.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _bins.Dispose();
        _device.Dispose();
        _ids.Dispose();
        _accelerator.Dispose();
        _context.Dispose();
    }
}
