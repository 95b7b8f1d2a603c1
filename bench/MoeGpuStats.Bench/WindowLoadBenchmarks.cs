using BenchmarkDotNet.Attributes;
using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Bench;

/// <summary>
/// A read of a whole model's window load (DeepSeek-V3's 58 MoE layers of 256 experts, a window of 1,000 steps of 64
/// tokens, full): <see cref="ModelRoutingStats.WindowLoad()"/>, which returns a new array, against
/// <see cref="ModelRoutingStats.WindowLoad(Span{ulong})"/> into a buffer kept by the caller, read back to back (so the
/// managed window keeps its running sum and a read is a copy). <c>Engine</c>: <c>managed</c>, or <c>device</c>, the
/// best accelerator present (ILGPU's CPU accelerator where there is no GPU).
/// </summary>
[MemoryDiagnoser]
public class WindowLoadBenchmarks
{
    private const int Layers = 58;
    private const int Experts = 256;
    private const int TopK = 8;
    private const int Tokens = 64;

    private Context? _context;
    private Accelerator? _accelerator;
    private ModelRoutingStats _model = null!;
    private ulong[] _buffer = null!;

    [Params("managed", "device")]
    public string Engine { get; set; } = "managed";

    [GlobalSetup]
    public void Setup()
    {
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = 1_000 };
        if (Engine == "managed")
        {
            _model = new ModelRoutingStats(options);
        }
        else
        {
            _context = Context.Create(builder => builder.Default());
            _accelerator = _context.GetPreferredDevice(preferCPU: false).CreateAccelerator(_context);
            _model = ModelRoutingStats.OnDevice(_accelerator, options);
        }

        var random = new Random(11);
        var ids = new int[Layers * Tokens * TopK];
        for (var step = 0; step < options.Window; step++)
        {
            for (var i = 0; i < ids.Length; i++)
            {
                var u = random.NextDouble();
                ids[i] = (int)(u * u * Experts);
            }

            _model.RecordStep(ids, Tokens, TopK);
        }

        _buffer = new ulong[Layers * Experts];
    }

    [Benchmark(Baseline = true)]
    public ulong WindowLoadArray() => _model.WindowLoad()[0];

    [Benchmark]
    public ulong WindowLoadIntoBuffer()
    {
        _model.WindowLoad(_buffer);
        return _buffer[0];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _model.Dispose();
        _accelerator?.Dispose();
        _context?.Dispose();
    }
}
