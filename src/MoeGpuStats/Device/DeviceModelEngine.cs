using System.Buffers;
using System.Runtime.CompilerServices;
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
/// that only folds it. Every call enqueues its work under one lock; a read then waits for its copy
/// back under a lock of the reads' own, so a step recorded meanwhile does not wait for the queue
/// ahead of the copy, at most for the copy's transfer (<see cref="DeviceStateReader.ToHost"/>;
/// <see cref="BeginRead"/> does not wait at all on CUDA: the caller polls an event).
/// </summary>
/// <remarks>
/// The device counts the steps: a read folds whatever the device holds pending and takes the steps
/// from layer 0's batches folded in, so launches the host never saw (a CUDA graph's replays) count as
/// every other step. The host's own count (<c>_knownSteps</c>) serves only
/// <see cref="DeviceArrays"/>, which must not wait.
/// </remarks>
internal sealed partial class DeviceModelEngine : ModelRoutingEngine
{
    private readonly bool _ownsStream;
    private readonly IDisposable? _owned;
    private readonly ModelRecordLauncher _record;
    private readonly UtilizationQueryLauncher _query;
    private readonly Action<AcceleratorStream, int, ArrayView<ulong>, int, ArrayView<int>, int, ArrayView<ulong>, ArrayView<LayerLoad>> _measure;
    private readonly Action<AcceleratorStream, Index1D, ArrayView<uint>, ArrayView<int>, ArrayView<RoutingStateBlock>, int, int, ArrayView<ulong>, ArrayView<ulong>> _recentLoad;
    private readonly List<MemoryBuffer> _buffers = [];
    private readonly List<Action> _clears = [];
    private readonly ModelStateViews _views;
    private readonly ArrayView<int> _ranks;
    private readonly ArrayView<ulong> _scratchLoads;
    private readonly ArrayView<ulong> _recentLoads;
    private readonly ArrayView<LayerLoad> _layerLoads;
    private readonly ArrayView<byte> _readback;
    private readonly DeviceStateReader _reader;
    private readonly ArrayView<UtilizationQueryResult> _queryResult;
    private readonly ArrayView<float> _hostLosses;
    private readonly DeviceLayerEngine[] _layers;
    private readonly Lock _readGate = new();
    private readonly List<PendingReading> _pending = [];
    private readonly PageLockedPool _pageLockedPool;
    private MemoryBuffer1D<int, Stride1D.Dense>? _hostIds;
    private ModelStepArguments _shape;
    private ulong _knownSteps;
    private ulong _launches;
    private ulong _stagings;
    private ulong _countedStaging;
    private int _resets;
    private int[]? _ranksOnDevice;
    private int _placementCopies;
    private bool _disposed;

    /// <summary>
    /// Loads the kernels and allocates the state on <paramref name="accelerator"/> (which
    /// <paramref name="owned"/>, when given, is disposed with this engine);
    /// <paramref name="boundGroupsPerMultiprocessor"/> as <see cref="ModelRecordLauncher"/>'s (0: the library's kernel);
    /// empty, or holding <paramref name="state"/> (an engine's export with its window ring, checked by the caller).
    /// </summary>
    /// <exception cref="InsufficientMemoryException">The device could not allocate the state; the message gives the size.</exception>
    public DeviceModelEngine(Accelerator accelerator, ModelRoutingStatsOptions options, AcceleratorStream? stream = null, IDisposable? owned = null, int boundGroupsPerMultiprocessor = 0, ModelState? state = null)
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
        _reader = new DeviceStateReader(Stream);
        _pageLockedPool = new PageLockedPool(accelerator);
        long layers = options.Layers;
        var perLayer = layers * options.Experts;
        try
        {
            // The buffers are zeroed after the last is made, so the memory they take together is checked first.
            DeviceMemory.CheckHostMemory(accelerator, options.DeviceStateBytes(), "the model's routing state");
            _views = new ModelStateViews
            {
                Blocks = Allocate<RoutingStateBlock>(layers),
                BatchHistogram = Allocate<ulong>(layers * BatchHistogramLength),
                BatchInvalid = Allocate<ulong>(layers * BatchBuffers),
                BatchPaddedTokens = Allocate<ulong>(layers * BatchBuffers),
                UtilizationSums = Allocate<double>(perLayer),
                TokenCounts = Allocate<ulong>(perLayer),
                Utilization = Allocate<float>(perLayer),
                DecayedUtilization = Allocate<double>(perLayer),
                VarianceHistory = Allocate<float>(layers * VarianceWindow),
                WindowRing = Allocate<uint>(options.WindowEntries),
                WindowLoad = Allocate<ulong>(perLayer),
                Control = Allocate<int>(ModelStateLayout.ControlLength),
                PendingLosses = Allocate<float>(BatchBuffers * layers * 2),
            };
            _ranks = Allocate<int>(options.Experts, cleared: false);
            _scratchLoads = Allocate<ulong>(perLayer);
            _recentLoads = Allocate<ulong>(perLayer);
            _layerLoads = Allocate<LayerLoad>(ReadbackLoads * layers);
            _readback = Allocate<byte>(ReadbackBytes(options), cleared: false);
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
            SkipEmptySteps = options.SkipEmptySteps ? 1 : 0,
            Copies = 1,
        };
        _layers = Enumerable.Range(0, options.Layers).Select(l => new DeviceLayerEngine(this, l)).ToArray();
        ClearDevice();
        if (state is not null)
        {
            try
            {
                Import(state);
            }
            catch
            {
                // As for a failed allocation: what frees the accelerator is the caller's to dispose when the constructor throws.
                Disposal.All([_pageLockedPool, .. MemoryParts()]);
                throw;
            }
        }
    }

    /// <summary>Parts of the measured layer loads a reading holds: the window (or its newest steps), since the start, and a second horizon.</summary>
    internal const int ReadbackLoads = 3;

    public Accelerator Accelerator { get; }

    /// <summary>The stream every step and read is ordered on.</summary>
    public AcceleratorStream Stream { get; }

    public override string Name => Accelerator.AcceleratorType.ToString().ToLowerInvariant();

    public override string DeviceName => Accelerator.Name;

    /// <summary>
    /// The bytes of the read-back buffer a reading is staged in on the device before its one copy to the host:
    /// the most of a reading (the measured loads, the layers' blocks, the window load and the token counts),
    /// the state without its ring (what JSON saves: the blocks, four per-expert arrays, the variance histories,
    /// the control and the window load) and a layer's whole state (<see cref="DeviceStateReader.StateBytes"/>).
    /// </summary>
    internal static long ReadbackBytes(ModelRoutingStatsOptions options)
    {
        long layers = options.Layers, entries = layers * options.Experts;
        var blocks = layers * Unsafe.SizeOf<RoutingStateBlock>();
        var reading = (ReadbackLoads * layers * Unsafe.SizeOf<LayerLoad>()) + blocks + (2 * entries * sizeof(ulong));
        return Math.Max(Math.Max(reading, ExportBytes(options)), DeviceStateReader.StateBytes(options.Experts));
    }

    /// <summary>The bytes <see cref="Export"/> stages of the state without the window ring (a decayed utilization counted whether kept or not).</summary>
    private static long ExportBytes(ModelRoutingStatsOptions options)
    {
        long layers = options.Layers, entries = layers * options.Experts;
        return (layers * Unsafe.SizeOf<RoutingStateBlock>())
            + (entries * (sizeof(float) + sizeof(double) + sizeof(double) + sizeof(ulong) + sizeof(ulong)))
            + (layers * VarianceWindow * sizeof(float))
            + (ModelStateLayout.ControlLength * sizeof(int));
    }

    /// <summary>
    /// The copies between host and device the reads have made (a layer's reads included), each a wait for
    /// the stream: what reading costs a host thread. Recording ids from host memory is not counted.
    /// </summary>
    internal int ReadWaits => _reader.Copies + _placementCopies;

    /// <summary>The reader every read copies back through (tests hold a read at its copy).</summary>
    internal DeviceStateReader Reader => _reader;

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
            DeviceMemory.CopyFromHost(Stream, deviceIds, ids[..(int)length]);
            var layers = Options.Layers;
            Launch(deviceIds, StepArguments(tokens, topK, layerStride, tokenStride), default, Staged(loadBalanceLosses, 0), Staged(routerZLosses, layers));
        }
    }

    /// <summary>Host losses copied into the staging view at <paramref name="at"/>; empty for none.</summary>
    private ArrayView<float> Staged(ReadOnlySpan<float> losses, int at)
    {
        var view = _hostLosses.SubView(at, losses.Length);
        DeviceMemory.CopyFromHost(Stream, view, losses);
        return view;
    }

    /// <summary>Enqueues a recorded step and counts it in the host's count.</summary>
    private void Launch<T>(ArrayView<T> ids, ModelStepArguments arguments, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
        where T : unmanaged
    {
        Enqueue(ids, arguments, validTokens, loadBalanceLosses, routerZLosses);
        _knownSteps++;
        _launches++;
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

    /// <summary>Of <paramref name="steps"/>, those in the window: every one, up to the window's length.</summary>
    private int WindowSteps(ulong steps) => (int)Math.Min(steps, (ulong)Options.Window);

    /// <summary>
    /// Throws if the model, its accelerator or its stream was disposed: work enqueued after that would
    /// touch freed memory. Its layers' handles check through here.
    /// </summary>
    internal void ThrowIfUnusable()
    {
        ThrowIfDisposed(_disposed);
        DeviceMemory.ThrowIfGone(Accelerator, Stream);
    }

    public override RoutingStatsEngine Layer(int layer) => _layers[layer];

    public override void Reset()
    {
        lock (Gate)
        {
            ThrowIfUnusable();
            ClearDevice();
            _knownSteps = 0;
            _resets++;
        }
    }

    public override void Dispose()
    {
        // The reads' lock first, as a read takes them: a read waiting for its copy finishes before the memory goes.
        lock (_readGate)
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
                TakePendingReadings();
            }
            finally
            {
                // A wait that fails (a sticky CUDA error) must not keep the memory: the statistics are gone either way.
                Disposal.All([_pageLockedPool, .. MemoryParts(), _owned]);
            }
        }
    }

    /// <summary>
    /// Takes every pending reading's results, their copies ended with the stream: the copies' events and
    /// page-locked memory belong to the accelerator, which a model may own, so they go before it does.
    /// The caller holds both locks.
    /// </summary>
    private void TakePendingReadings()
    {
        foreach (var reading in _pending)
        {
            reading.TryTakeResult();
        }

        _pending.Clear();
    }

    private void FreeDeviceMemory() => Disposal.All(MemoryParts());

    /// <summary>The buffers allocated so far and the stream, where this engine made it.</summary>
    private IDisposable?[] MemoryParts() => [.. _buffers, _hostIds, _ownsStream ? Stream : null];

    private void ClearDevice()
    {
        foreach (var clear in _clears)
        {
            clear();
        }
    }

    /// <summary>A buffer of the state, zeroed by every reset where <paramref name="cleared"/> (the others are written before each read of them).</summary>
    private ArrayView<T> Allocate<T>(long length, bool cleared = true)
        where T : unmanaged
    {
        var buffer = DeviceMemory.Allocate<T>(Accelerator, length, "the model's routing state");
        _buffers.Add(buffer);
        if (cleared)
        {
            _clears.Add(() => buffer.View.MemSetToZero(Stream));
        }

        return buffer.View;
    }
}
