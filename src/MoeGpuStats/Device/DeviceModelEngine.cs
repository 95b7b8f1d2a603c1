using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Engines;
using MoeGpuStats.Kernels;
using MoeGpuStats.Kernels.Model;
using static MoeGpuStats.Kernels.RoutingStateLayout;

namespace MoeGpuStats.Device;

/// <summary>
/// A model's routing state in the memory of one accelerator. A step is one launch of
/// <see cref="ModelRecordKernel"/> on <see cref="Stream"/>, which returns without waiting; the
/// step stays pending on the device until the next step or a read, which first enqueues a launch
/// that only folds it. Calls are serialized by a lock.
/// </summary>
/// <remarks>
/// The device counts the steps: a read folds whatever the device holds pending and takes the steps
/// from layer 0's batches folded in, so launches the host never saw (a CUDA graph's replays) count as
/// every other step. The host's own count (<c>_knownSteps</c>) serves only
/// <see cref="DeviceArrays"/>, which must not wait.
/// </remarks>
internal sealed class DeviceModelEngine : ModelRoutingEngine
{
    private readonly bool _ownsStream;
    private readonly IDisposable? _owned;
    private readonly ModelRecordLauncher _record;
    private readonly UtilizationQueryLauncher _query;
    private readonly Action<AcceleratorStream, int, ArrayView<ulong>, int, ArrayView<int>, int, ArrayView<ulong>, ArrayView<LayerLoad>> _measure;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<uint>, ArrayView<int>, int, int, ArrayView<ulong>> _recentLoad;
    private readonly List<MemoryBuffer> _buffers = [];
    private readonly List<Action> _clears = [];
    private readonly ModelStateViews _views;
    private readonly ArrayView<int> _ranks;
    private readonly ArrayView<ulong> _scratchLoads;
    private readonly ArrayView<ulong> _recentLoads;
    private readonly ArrayView<LayerLoad> _layerLoads;
    private readonly ArrayView<UtilizationQueryResult> _queryResult;
    private readonly ArrayView<float> _hostLosses;
    private readonly DeviceLayerEngine[] _layers;
    private MemoryBuffer1D<int, Stride1D.Dense>? _hostIds;
    private ModelStepArguments _shape;
    private ulong _knownSteps;
    private bool _disposed;

    /// <summary>
    /// Loads the kernels and allocates the state on <paramref name="accelerator"/> (which
    /// <paramref name="owned"/>, when given, is disposed with this engine);
    /// <paramref name="boundGroupsPerMultiprocessor"/> as <see cref="ModelRecordLauncher"/>'s (0: the library's kernel).
    /// </summary>
    /// <exception cref="InsufficientMemoryException">The device could not allocate the state; the message gives the size.</exception>
    public DeviceModelEngine(Accelerator accelerator, ModelRoutingStatsOptions options, AcceleratorStream? stream = null, IDisposable? owned = null, int boundGroupsPerMultiprocessor = 0)
        : base(options)
    {
        DeviceMemory.CheckConstructorArguments(accelerator, stream);
        _record = new ModelRecordLauncher(accelerator, boundGroupsPerMultiprocessor);
        _query = UtilizationQueryKernel.Create(accelerator);
        _measure = LayerBalanceKernel.Create(accelerator);
        _recentLoad = RecentLoadKernel.Create(accelerator);
        Accelerator = accelerator;
        _ownsStream = stream is null;
        Stream = stream ?? accelerator.CreateStream();
        long layers = options.Layers;
        var perLayer = layers * options.Experts;
        try
        {
            _views = new ModelStateViews
            {
                Blocks = Allocate<RoutingStateBlock>(layers),
                BatchHistogram = Allocate<ulong>(layers * BatchHistogramLength),
                BatchInvalid = Allocate<ulong>(layers * BatchBuffers),
                BatchPaddedTokens = Allocate<ulong>(layers * BatchBuffers),
                UtilizationSums = Allocate<double>(perLayer),
                TokenCounts = Allocate<ulong>(perLayer),
                Utilization = Allocate<float>(perLayer),
                DecayedUtilization = Allocate<float>(perLayer),
                VarianceHistory = Allocate<float>(layers * VarianceWindow),
                WindowRing = Allocate<uint>(options.WindowEntries),
                WindowLoad = Allocate<ulong>(perLayer),
                Control = Allocate<int>(ModelStateLayout.ControlLength),
                PendingLosses = Allocate<float>(BatchBuffers * layers * 2),
            };
            _ranks = Allocate<int>(options.Experts);
            _scratchLoads = Allocate<ulong>(perLayer);
            _recentLoads = Allocate<ulong>(perLayer);
            _layerLoads = Allocate<LayerLoad>(layers);
            _queryResult = Allocate<UtilizationQueryResult>(1);
            _hostLosses = Allocate<float>(2 * layers);
        }
        catch (InsufficientMemoryException)
        {
            FreeDeviceMemory();
            throw;
        }

        _owned = owned;
        _shape = new ModelStepArguments
        {
            Layers = options.Layers,
            Experts = options.Experts,
            Window = options.Window,
            ExpertCapacity = options.ExpertCapacity ?? 0,
            SlotsPerExpert = options.LayerOptions.SlotsPerExpert,
            UtilizationDecay = options.UtilizationDecay ?? -1f,
            Copies = 1,
        };
        _layers = Enumerable.Range(0, options.Layers).Select(l => new DeviceLayerEngine(this, l)).ToArray();
        ClearDevice();
    }

    public Accelerator Accelerator { get; }

    /// <summary>The stream every step and read is ordered on.</summary>
    public AcceleratorStream Stream { get; }

    public override string Name => Accelerator.AcceleratorType.ToString().ToLowerInvariant();

    public override string DeviceName => Accelerator.Name;

    /// <summary>The bytes of the state's buffers (the staging of host ids aside).</summary>
    internal long StateBytes => _buffers.Sum(buffer => buffer.LengthInBytes);

    /// <summary>The arguments a step of <paramref name="tokens"/> × <paramref name="topK"/> ids at the strides launches with: the same for every such step.</summary>
    internal ModelStepArguments StepArguments(int tokens, int topK, long layerStride, long tokenStride)
    {
        var shape = _shape;
        shape.Tokens = tokens;
        shape.TopK = topK;
        shape.LayerStride = layerStride;
        shape.TokenStride = tokenStride;
        return _record.Step(shape);
    }

    public override void RecordStep<T>(ArrayView<T> ids, int tokens, int topK, long layerStride, long tokenStride, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            Launch(ids, StepArguments(tokens, topK, layerStride, tokenStride), validTokens, loadBalanceLosses, routerZLosses);
        }
    }

    /// <summary>
    /// The step's launch with <paramref name="arguments"/> as given and nothing else, as a CUDA graph
    /// replays it: the host does not count it (the tests hold one set of arguments for many steps).
    /// </summary>
    internal void Replay<T>(ArrayView<T> ids, ModelStepArguments arguments, ArrayView<int> validTokens)
        where T : unmanaged
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            Enqueue(ids, arguments, validTokens, default, default);
        }
    }

    public override void RecordStep(ReadOnlySpan<int> ids, int tokens, int topK, long layerStride, long tokenStride, ReadOnlySpan<float> loadBalanceLosses, ReadOnlySpan<float> routerZLosses)
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            // Checked by the caller: the extent lies within the span.
            var length = ModelIdLayout.StepExtent(Options.Layers, layerStride, tokens, topK, tokenStride)!.Value;
            if (_hostIds is null || _hostIds.Length < length)
            {
                var larger = DeviceMemory.Allocate<int>(Accelerator, Math.Max(length, 1), "a step's ids copied from the host");
                if (_hostIds is not null)
                {
                    // The pending step's launch may still be reading the old buffer, as in DeviceRoutingStats's record.
                    Stream.Synchronize();
                    _hostIds.Dispose();
                }

                _hostIds = larger;
            }

            ArrayView<int> deviceIds = _hostIds.View.SubView(0, length);
            deviceIds.CopyFromCPU(Stream, ids[..(int)length]);
            var layers = Options.Layers;
            Launch(deviceIds, StepArguments(tokens, topK, layerStride, tokenStride), default, Staged(loadBalanceLosses, 0), Staged(routerZLosses, layers));
        }
    }

    /// <summary>Host losses copied into the staging view at <paramref name="at"/>; empty for none.</summary>
    private ArrayView<float> Staged(ReadOnlySpan<float> losses, int at)
    {
        var view = _hostLosses.SubView(at, losses.Length);
        view.CopyFromCPU(Stream, losses);
        return view;
    }

    /// <summary>Enqueues a recorded step and counts it in the host's count.</summary>
    private void Launch<T>(ArrayView<T> ids, ModelStepArguments arguments, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
        where T : unmanaged
    {
        Enqueue(ids, arguments, validTokens, loadBalanceLosses, routerZLosses);
        _knownSteps++;
    }

    /// <summary>
    /// Enqueues the model kernel for <typeparamref name="T"/>'s ids (int, long or short, as the caller
    /// checked) on <see cref="Stream"/>, with empty views for those left default.
    /// </summary>
    private void Enqueue<T>(ArrayView<T> ids, ModelStepArguments arguments, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
        where T : unmanaged
    {
        var (valid, losses, zLosses) = (Valid(validTokens), Valid(loadBalanceLosses), Valid(routerZLosses));
        if (typeof(T) == typeof(long))
        {
            _record.Launch(Stream, new Int64Ids(Valid(ids).Cast<long>()), _views, arguments, valid, losses, zLosses);
        }
        else if (typeof(T) == typeof(short))
        {
            _record.Launch(Stream, new Int16Ids(Valid(ids).Cast<short>()), _views, arguments, valid, losses, zLosses);
        }
        else
        {
            _record.Launch(Stream, new Int32Ids(Valid(ids).Cast<int>()), _views, arguments, valid, losses, zLosses);
        }
    }

    /// <summary>An empty view of the state for a view the caller left default, which a kernel cannot take.</summary>
    private ArrayView<T> Valid<T>(ArrayView<T> view)
        where T : unmanaged => view.IsValid ? view : _views.Control.Cast<T>().SubView(0, 0);

    /// <summary>
    /// Enqueues a launch that folds the pending step; the device decides whether one is pending
    /// (otherwise the launch folds nothing and only swaps the two empty batch buffers), as the host does
    /// not know of a replayed launch. The caller holds the lock.
    /// </summary>
    private void FoldPending() => Enqueue(default(ArrayView<int>), ModelRecordLauncher.FoldOnly(_shape), default, default, default);

    /// <summary>
    /// Folds the pending step and returns the steps recorded: layer 0's batches folded in (every layer
    /// folds every step), one copy and a wait for the stream; kept as the host's count for
    /// <see cref="DeviceArrays"/>. The caller holds the lock.
    /// </summary>
    private ulong FoldAndReadSteps()
    {
        FoldPending();
        return _knownSteps = DeviceStateReader.ReadBlock(Stream, _views.Layer(0, Options.Experts)).TotalRoutings;
    }

    /// <summary>Of <paramref name="steps"/>, those in the window: every one, up to the window's length.</summary>
    private int WindowSteps(ulong steps) => (int)Math.Min(steps, (ulong)Options.Window);

    /// <summary>
    /// Runs <paramref name="read"/> on the folded state of layer <paramref name="layer"/> and its block,
    /// under the lock. The block is read once for both: its <c>Experts</c> is the expert count the
    /// layer's reads see (0 before its first step, as a single-layer state's), and its
    /// <c>TotalRoutings</c> the model's steps (every layer folds every step), kept as the host's count
    /// as every read keeps it.
    /// </summary>
    internal T ReadLayer<T>(int layer, Func<AcceleratorStream, RoutingStateViews, RoutingStateBlock, T> read)
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            FoldPending();
            var views = _views.Layer(layer, Options.Experts);
            var block = DeviceStateReader.ReadBlock(Stream, views);
            _knownSteps = block.TotalRoutings;
            return read(Stream, views, block);
        }
    }

    /// <summary>
    /// Throws if the model, its accelerator or its stream was disposed: work enqueued after that would
    /// touch freed memory. Its layers' handles check through here.
    /// </summary>
    internal void ThrowIfUnusable()
    {
        ThrowIfDisposed(_disposed);
        DeviceMemory.ThrowIfGone(Accelerator, Stream, nameof(ModelRoutingStats));
    }

    /// <summary>Layer <paramref name="layer"/>'s utilization query.</summary>
    internal UtilizationQueryResult QueryLayer(int layer, int window) =>
        ReadLayer(layer, (stream, views, _) => DeviceStateReader.Query(stream, views, window, _query, _queryResult));

    /// <summary>
    /// Layer <paramref name="layer"/>'s utilization query for its expert count and, when
    /// <paramref name="withTotals"/>, its totals, under one hold of the lock: a step or reset on
    /// another thread comes before or after all of it, never between the count, the query and the totals.
    /// </summary>
    internal (UtilizationQuery Query, RoutingTotals Totals) LayerSummary(int layer, bool withTotals) =>
        ReadLayer(layer, (stream, views, block) => (
            DeviceRoutingEngine.QueryOf(block.Experts, DeviceStateReader.Query(stream, views, 0, _query, _queryResult)),
            withTotals ? DeviceRoutingEngine.TotalsOf(block) : default));

    public override RoutingStatsEngine Layer(int layer) => _layers[layer];

    public override ulong[] WindowLoad(int recentSteps)
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            var loads = RecentLoads(recentSteps, WindowSteps(FoldAndReadSteps()));
            var load = new ulong[loads.Length];
            loads.CopyToCPU(Stream, load.AsSpan());
            return load;
        }
    }

    /// <summary>
    /// The window's running sum where <paramref name="recentSteps"/> covers every step it holds, else
    /// the newest steps' rows of the ring summed (enqueued) into a buffer kept for it. Under the lock, folded.
    /// </summary>
    private ArrayView<ulong> RecentLoads(int recentSteps, int windowSteps)
    {
        if (recentSteps >= windowSteps)
        {
            return _views.WindowLoad;
        }

        _recentLoad(Stream, (int)_recentLoads.Length, _views.WindowRing, _views.Control, Options.Window, recentSteps, _recentLoads);
        return _recentLoads;
    }

    /// <remarks>
    /// The buffers are allocated once, so the views stay at the same addresses until <see cref="Dispose"/>;
    /// <see cref="Reset"/> clears them in place and every later fold writes into them. The steps are the
    /// host's count, not read back: reading them would make the host wait for the producer's work.
    /// </remarks>
    public override ModelDeviceArrays DeviceArrays()
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            FoldPending();
            var steps = _knownSteps;
            return new ModelDeviceArrays(_views.TokenCounts, _views.WindowLoad, Stream, Options.Layers, Options.Experts, steps, WindowSteps(steps));
        }
    }

    public override (LayerLoad[] Window, LayerLoad[] SinceStart, ulong Steps, int WindowSteps) MeasureLoads(int[]? ranks, int rankCount, int recentSteps)
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            var steps = FoldAndReadSteps();
            var windowSteps = WindowSteps(steps);
            var rankView = _ranks.SubView(0, ranks?.Length ?? 0);
            rankView.CopyFromCPU(Stream, ranks ?? []);
            var window = Measure(RecentLoads(recentSteps, windowSteps), rankView, rankCount);
            var sinceStart = Measure(_views.TokenCounts, rankView, rankCount);
            return (window, sinceStart, steps, Math.Min(recentSteps, windowSteps));
        }
    }

    private LayerLoad[] Measure(ArrayView<ulong> loads, ArrayView<int> ranks, int rankCount)
    {
        _measure(Stream, Options.Layers, loads, Options.Experts, ranks, rankCount, _scratchLoads, _layerLoads);
        var results = new LayerLoad[Options.Layers];
        _layerLoads.CopyToCPU(Stream, results.AsSpan());
        return results;
    }

    public override void Reset()
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            ClearDevice();
            _knownSteps = 0;
        }
    }

    public override ModelState Export(bool withRing = true)
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            var steps = FoldAndReadSteps();
            var experts = steps == 0 ? 0 : Options.Experts;
            var layerOptions = Options.LayerOptions;
            var layers = new RoutingState[Options.Layers];
            for (var l = 0; l < layers.Length; l++)
            {
                layers[l] = DeviceStateReader.ReadState(Stream, _views.Layer(l, Options.Experts), experts, layerOptions);
            }

            var control = new int[ModelStateLayout.ControlLength];
            var load = new ulong[_views.WindowLoad.Length];
            var ring = withRing ? new uint[_views.WindowRing.Length] : null;
            _views.Control.CopyToCPU(Stream, control.AsSpan());
            _views.WindowLoad.CopyToCPU(Stream, load.AsSpan());
            if (ring is not null)
            {
                _views.WindowRing.CopyToCPU(Stream, ring.AsSpan());
            }

            return new ModelState
            {
                Steps = steps,
                WindowSteps = WindowSteps(steps),
                WindowPosition = control[ModelStateLayout.WindowPosition],
                Layers = layers,
                WindowLoad = load,
                WindowRing = ring,
            };
        }
    }

    public override void Dispose()
    {
        lock (Gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            try
            {
                DeviceMemory.FinishUnlessGone(Accelerator, Stream);
            }
            finally
            {
                // A wait that fails (a sticky CUDA error) must not keep the memory: the statistics are gone either way.
                FreeDeviceMemory();
                _owned?.Dispose();
            }
        }
    }

    private void FreeDeviceMemory()
    {
        foreach (var buffer in _buffers)
        {
            buffer.Dispose();
        }

        _hostIds?.Dispose();
        if (_ownsStream)
        {
            Stream?.Dispose();
        }
    }

    private void ClearDevice()
    {
        foreach (var clear in _clears)
        {
            clear();
        }
    }

    private ArrayView<T> Allocate<T>(long length)
        where T : unmanaged
    {
        var buffer = DeviceMemory.Allocate<T>(Accelerator, length, "the model's routing state");
        _buffers.Add(buffer);
        _clears.Add(() => buffer.View.MemSetToZero(Stream));
        return buffer.View;
    }
}
