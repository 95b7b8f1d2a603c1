using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Bench;

/// <summary>
/// One step of a whole model (<see cref="ModelRoutingStats.RecordStep(ReadOnlySpan{int}, int, int, long, ReadOnlySpan{float}, ReadOnlySpan{float}, long)"/>)
/// against what the same statistics cost without it: L single-layer records of the same ids, one
/// <see cref="RoutingStats"/> per layer. Each category's baseline is the L single-layer records, so
/// the Ratio column is the step's cost in units of L records (the CPU target: at most 1).
/// </summary>
/// <remarks>
/// <c>Managed</c>: the managed engine, ids in host memory. <c>Device</c>: the device engines on the
/// best accelerator present (ILGPU's CPU accelerator where there is no GPU, as RecordBenchmarks), ids
/// in device memory; one step is one launch for every layer, the single-layer records L launches on
/// the same stream, and each benchmark ends by waiting for the stream, as RecordBenchmarks.DeviceEngine.
/// Shapes: <see cref="ModelShape.Default"/>, or the variable <c>MOEGS_MODEL_SHAPES</c>
/// (<c>58x256x8x1,58x256x8x256</c>) to run fewer. On the CPU, filter the category:
/// <c>--filter '*ModelStepBenchmarks.Managed*'</c>.
/// </remarks>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class ModelStepBenchmarks
{
    public const string ShapesVariable = "MOEGS_MODEL_SHAPES";

    private ModelShape _shape;
    private int[] _hostIds = null!;
    private int[] _tokensFirstIds = null!;

    private ModelRoutingStats _managedModel = null!;
    private ModelRoutingStats _managedModelWindowOfOne = null!;
    private RoutingStats[] _managedLayers = null!;

    private Context? _context;
    private Accelerator? _accelerator;
    private AcceleratorStream _stream = null!;
    private MemoryBuffer1D<int, Stride1D.Dense> _ids = null!;
    private ModelRoutingStats _deviceModel = null!;
    private DeviceRoutingStats[] _deviceLayers = null!;
    private ArrayView<int>[] _layerViews = null!;

    /// <summary>LxExkxT: layers, experts, top-k, tokens per layer.</summary>
    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "58x256x8x256";

    public static IEnumerable<string> Shapes() =>
        ModelShape.ParseList(Environment.GetEnvironmentVariable(ShapesVariable) is { Length: > 0 } chosen ? chosen : ModelShape.Default)
            .Select(shape => shape.ToString());

    [GlobalSetup(Targets = [nameof(ManagedRecordStep), nameof(ManagedRecordStepWindowOfOne), nameof(ManagedRecordStepTokensFirst), nameof(ManagedSingleLayerRecords)])]
    public void SetupManaged()
    {
        Prepare();
        _managedModel = new ModelRoutingStats(Options());
        _managedModelWindowOfOne = new ModelRoutingStats(Options() with { Window = 1 });
        _managedLayers = Enumerable.Range(0, _shape.Layers).Select(_ => new RoutingStats(Options().LayerOptions)).ToArray();
    }

    [GlobalSetup(Targets = [nameof(DeviceRecordStep), nameof(DeviceSingleLayerRecords)])]
    public void SetupDevice()
    {
        Prepare();
        _context = Context.Create(builder => builder.Default());
        _accelerator = _context.GetPreferredDevice(preferCPU: false).CreateAccelerator(_context);
        _stream = _accelerator.CreateStream();
        _ids = _accelerator.Allocate1D(_hostIds);
        _deviceModel = ModelRoutingStats.OnDevice(_accelerator, Options(), _stream);
        _deviceLayers = Enumerable.Range(0, _shape.Layers).Select(_ => new DeviceRoutingStats(_accelerator, Options().LayerOptions, _stream)).ToArray();
        _layerViews = Enumerable.Range(0, _shape.Layers).Select(l => _ids.View.BaseView.SubView(l * _shape.LayerIds, _shape.LayerIds)).ToArray();
    }

    [Benchmark(Baseline = true)]
    [BenchmarkCategory("Managed")]
    public void ManagedSingleLayerRecords()
    {
        var ids = _hostIds.AsSpan();
        var perLayer = (int)_shape.LayerIds;
        for (var l = 0; l < _managedLayers.Length; l++)
        {
            _managedLayers[l].RecordRouting(ids.Slice(l * perLayer, perLayer), _shape.Tokens, _shape.TopK);
        }
    }

    [Benchmark]
    [BenchmarkCategory("Managed")]
    public void ManagedRecordStep() => _managedModel.RecordStep(_hostIds.AsSpan(), _shape.Tokens, _shape.TopK);

    /// <summary>
    /// The step with a window of one step: the same L × E window update per step, on a ring of one
    /// row that stays in cache, where the default ring (1,000 steps) takes a new row each step. Tells
    /// the window's memory traffic from the rest of a step's fixed cost.
    /// </summary>
    [Benchmark]
    [BenchmarkCategory("Managed")]
    public void ManagedRecordStepWindowOfOne() => _managedModelWindowOfOne.RecordStep(_hostIds.AsSpan(), _shape.Tokens, _shape.TopK);

    /// <summary>
    /// The step's ids laid out <c>[tokens, layers, k]</c> (SGLang's (and some vLLM versions') routed-experts buffer),
    /// read at a layer stride of k and a token stride of L × k: the managed engine gathers each
    /// layer's rows before counting them, what this costs over the packed step.
    /// </summary>
    [Benchmark]
    [BenchmarkCategory("Managed")]
    public void ManagedRecordStepTokensFirst() =>
        _managedModel.RecordStep(_tokensFirstIds.AsSpan(), _shape.Tokens, _shape.TopK, layerStride: _shape.TopK, tokenStride: _shape.Layers * _shape.TopK);

    [Benchmark(Baseline = true)]
    [BenchmarkCategory("Device")]
    public void DeviceSingleLayerRecords()
    {
        for (var l = 0; l < _deviceLayers.Length; l++)
        {
            _deviceLayers[l].RecordRouting(_layerViews[l], _shape.Tokens, _shape.TopK);
        }

        _stream.Synchronize();
    }

    [Benchmark]
    [BenchmarkCategory("Device")]
    public void DeviceRecordStep()
    {
        _deviceModel.RecordStep(_ids.View, _shape.Tokens, _shape.TopK);
        _stream.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _managedModel?.Dispose();
        _managedModelWindowOfOne?.Dispose();
        foreach (var layer in _managedLayers ?? [])
        {
            layer.Dispose();
        }

        _deviceModel?.Dispose();
        foreach (var layer in _deviceLayers ?? [])
        {
            layer.Dispose();
        }

        _ids?.Dispose();
        _stream?.Dispose();
        _accelerator?.Dispose();
        _context?.Dispose();
    }

    private void Prepare()
    {
        _shape = ModelShape.Parse(Shape);
        _hostIds = _shape.Ids();
        _tokensFirstIds = _shape.TokensFirst(_hostIds);
    }

    private ModelRoutingStatsOptions Options() => new() { Layers = _shape.Layers, Experts = _shape.Experts };
}
