using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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
internal sealed class DeviceModelEngine : ModelRoutingEngine
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
                DecayedUtilization = Allocate<float>(perLayer),
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
            + (entries * (sizeof(float) + sizeof(double) + sizeof(float) + sizeof(ulong) + sizeof(ulong)))
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
    /// A read of what <paramref name="stage"/> enqueues into the read-back buffer, copied back at once. The
    /// staging runs under the lock, the pending step folded first, and returns the bytes staged, a block
    /// first (its <c>TotalRoutings</c> is the model's steps: every layer folds every step). The copy, the
    /// read's wait for the stream, runs with the lock released: a step recorded meanwhile is enqueued behind
    /// the staged reading, which it cannot change, and waits at most for the copy's transfer. The reads' own lock, held
    /// throughout, gives the read-back buffer to one reading at a time and keeps <see cref="Dispose"/> from
    /// freeing it under one.
    /// </summary>
    /// <param name="stage">Enqueues the reading's copies into the read-back buffer; returns the bytes staged.</param>
    /// <param name="into">Where the bytes are copied, at least as many as staged; null for a new array of them.</param>
    private byte[] ReadBack(Func<long> stage, byte[]? into = null)
    {
        lock (_readGate)
        {
            long staged;
            StagedAt at;
            lock (Gate)
            {
                ThrowIfUnusable();
                FoldPending();
                staged = stage();
                at = StagedNow();
            }

            var bytes = into ?? new byte[staged];
            _reader.ToHost(_readback.SubView(0, staged), bytes.AsSpan(0, (int)staged));
            RefreshKnownSteps(MemoryMarshal.Read<RoutingStateBlock>(bytes).TotalRoutings, at);
            return bytes;
        }
    }

    /// <summary>When a reading was staged: its place among the stagings, the host's launches and resets then. Under the lock.</summary>
    private StagedAt StagedNow() => new(++_stagings, _launches, _resets);

    /// <summary>
    /// Refreshes the host's count of steps from a reading's <paramref name="steps"/> (the device's count as staged) and
    /// the steps the host launched since; after a reset, the host's own count stands, and a reading staged before the one
    /// that last counted (a pending read taken late) counts nothing.
    /// </summary>
    private void RefreshKnownSteps(ulong steps, StagedAt at)
    {
        lock (Gate)
        {
            if (!_disposed && _resets == at.Resets && at.Staging > _countedStaging)
            {
                _knownSteps = steps + (_launches - at.Launches);
                _countedStaging = at.Staging;
            }
        }
    }

    private readonly record struct StagedAt(ulong Staging, ulong Launches, int Resets);

    /// <summary>
    /// Layer <paramref name="layer"/>'s block and the view <paramref name="values"/> gives of its state, staged
    /// and copied back at once (<see cref="ReadBack"/>: one wait, the lock released for it). <paramref name="values"/>
    /// runs under the lock and may enqueue what writes the view (a query). Its expert count, 0 before the
    /// layer's first step as a single-layer state's, is the block's.
    /// </summary>
    internal (RoutingStateBlock Block, T[] Values) ReadLayer<T>(int layer, Func<RoutingStateViews, ArrayView<T>> values)
        where T : unmanaged
    {
        var views = _views.Layer(layer, Options.Experts);
        var length = 0L;
        var bytes = ReadBack(() =>
        {
            var staged = 0L;
            Stage(views.State, ref staged);
            var view = values(views);
            length = view.Length;
            Stage(view, ref staged);
            return staged;
        });
        var read = 0L;
        return (Unstage<RoutingStateBlock>(bytes, 1, ref read)[0], Unstage<T>(bytes, length, ref read));
    }

    /// <summary>Layer <paramref name="layer"/>'s block alone (one wait).</summary>
    internal RoutingStateBlock ReadLayerBlock(int layer) => ReadLayer(layer, static views => views.State.SubView(0, 0)).Block;

    /// <summary>Layer <paramref name="layer"/>'s utilization query over a trend of <paramref name="window"/> variances, and its block, from one launch and one wait.</summary>
    internal (RoutingStateBlock Block, UtilizationQueryResult Result) QueryLayer(int layer, int window)
    {
        var (block, result) = ReadLayer(layer, views =>
        {
            _query(Stream, views, window, _queryResult);
            return _queryResult;
        });
        return (block, result[0]);
    }

    /// <summary>Layer <paramref name="layer"/>'s whole state, folded: its block and arrays staged and copied back at once (one wait).</summary>
    internal RoutingState ReadLayerState(int layer)
    {
        var bytes = ReadBack(() => _reader.StageState(_views.Layer(layer, Options.Experts), Options.Experts, Options.LayerOptions, _readback, 0));
        var read = 0L;
        return DeviceStateReader.UnstageState(bytes, Options.Experts, Options.LayerOptions, ref read);
    }

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

    /// <remarks>
    /// The bytes come back into an array rented from the shared pool, not a new one (the load of 58 layers of 256
    /// experts is a large-object allocation): a caller that gives its own buffer reads often. The array is this call's
    /// alone, so only <see cref="ReadBack"/>'s staging and copy hold the reads' lock, not the copy out of it.
    /// </remarks>
    public override void WindowLoad(int recentSteps, Span<ulong> destination)
    {
        var read = (long)Unsafe.SizeOf<RoutingStateBlock>();
        var bytes = ArrayPool<byte>.Shared.Rent((int)(read + (_views.WindowLoad.Length * sizeof(ulong))));
        try
        {
            ReadBack(
                () =>
                {
                    var staged = 0L;
                    Stage(_views.Blocks.SubView(0, 1), ref staged);
                    Stage(RecentLoads(recentSteps), ref staged);
                    return staged;
                },
                bytes);
            DeviceStateReader.Unstage(bytes, destination[..(int)_views.WindowLoad.Length], ref read);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <summary>
    /// The window's running sum where <paramref name="recentSteps"/> covers the whole window, else a buffer
    /// kept for it into which the device sums the newest steps' rows of the ring (enqueued); the device
    /// itself copies the running sum there where the steps asked cover every step the window holds, which
    /// the host does not know without waiting. Under the lock, folded.
    /// </summary>
    private ArrayView<ulong> RecentLoads(int recentSteps)
    {
        if (recentSteps >= Options.Window)
        {
            return _views.WindowLoad;
        }

        _recentLoad(Stream, (int)_recentLoads.Length, _views.WindowRing, _views.Control, _views.Blocks, Options.Window, recentSteps, _views.WindowLoad, _recentLoads);
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

    /// <remarks>
    /// Every part is enqueued (measured, or copied device to device into the read-back buffer) before one
    /// copy of that buffer to the host, the reading's only wait, made with the model's lock released
    /// (<see cref="ReadBack"/>); a placement is copied to the device only when it differs from the last one
    /// (a copy from the host waits too, holding only the reads' lock). The bytes come back into an array rented
    /// from the shared pool: the reading copies out what it keeps.
    /// </remarks>
    public override ModelReading Read(ModelReadRequest request)
    {
        lock (_readGate)
        {
            ThrowIfUnusable();
            var ranks = PlacementOnDevice(request.Ranks);
            var bytes = ArrayPool<byte>.Shared.Rent((int)ReadingBytes(request));
            try
            {
                return ReadingOf(ReadBack(() => StageReading(request, ranks), bytes), request);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(bytes);
            }
        }
    }

    /// <remarks>
    /// The reading is staged as <see cref="Read"/> stages it, and its copy back enqueued behind it into host
    /// memory of its own (<see cref="PendingCopy"/>; on CUDA page-locked, from a pool the engine's reads reuse),
    /// taken before the locks are: the read-back buffer is free for the next reading at once, whose staging the
    /// stream orders after this copy. On CUDA nothing waits, but a placement that differs from the last one
    /// given, which is copied to the device first.
    /// The engine holds each reading whose results are not taken (nor it disposed), and takes them at its
    /// dispose (<see cref="TakePendingReadings"/>).
    /// </remarks>
    public override PendingReading BeginRead(ModelReadRequest request)
    {
        // Before the allocation, so that a model or accelerator already gone says so in the library's words.
        ThrowIfUnusable();
        var copy = new PendingCopy(Accelerator, ReadingBytes(request), _pageLockedPool);
        var at = default(StagedAt);
        var reading = new PendingReading(copy, bytes => ReadingOf(bytes, request), arrived => RefreshKnownSteps(arrived.Steps, at));
        try
        {
            lock (_readGate)
            {
                ThrowIfUnusable();
                var ranks = PlacementOnDevice(request.Ranks);
                ArrayView<byte> staged;
                lock (Gate)
                {
                    ThrowIfUnusable();
                    FoldPending();
                    staged = _readback.SubView(0, StageReading(request, ranks));
                    copy.Start(_reader, staged);
                    at = StagedNow();
                }

                // Where ILGPU gives no event, the copy is made here, with the model's lock released as a blocking read's
                // (a step on another thread does not wait for OpenCL's copy); the reads' lock keeps the read-back buffer.
                copy.CopyAtBegin(_reader, staged);

                // Held until taken or disposed: a reading dropped unread must not let its page-locked memory be collected
                // while the device may still copy into it. One whose copy has arrived is taken here, so that readings
                // dropped without a dispose do not pile up their memory until the model's dispose.
                _pending.RemoveAll(static live => live.TakeIfArrived());
                _pending.Add(reading);
            }
        }
        catch
        {
            reading.Dispose();
            throw;
        }

        return reading;
    }

    /// <summary>The readings <see cref="BeginRead"/> holds until they are taken or disposed: their copies may still be on their way.</summary>
    internal int HeldReadings
    {
        get
        {
            lock (_readGate)
            {
                return _pending.Count;
            }
        }
    }

    /// <summary>The bytes <see cref="StageReading"/> stages for <paramref name="request"/>.</summary>
    private long ReadingBytes(ModelReadRequest request)
    {
        var entries = _views.WindowLoad.Length;
        return (_views.Blocks.Length * Unsafe.SizeOf<RoutingStateBlock>())
            + (_layerLoads.Length * Unsafe.SizeOf<LayerLoad>())
            + ((request.WindowLoad ? entries : 0) * sizeof(ulong))
            + ((request.TokenCounts ? entries : 0) * sizeof(ulong));
    }

    /// <summary>Enqueues the measures <paramref name="request"/> asks and stages them, the blocks first; returns the bytes staged. Under the lock, folded.</summary>
    private long StageReading(ModelReadRequest request, ArrayView<int> ranks)
    {
        Measure(RecentLoads(request.RecentSteps), ranks, request.RankCount, 0);
        Measure(_views.TokenCounts, ranks, request.RankCount, 1);
        if (request.AlsoRecentSteps is { } recentSteps)
        {
            Measure(RecentLoads(recentSteps), ranks, request.RankCount, 2);
        }

        var staged = 0L;
        Stage(_views.Blocks, ref staged);
        Stage(_layerLoads, ref staged);
        if (request.WindowLoad)
        {
            Stage(_views.WindowLoad, ref staged);
        }

        if (request.TokenCounts)
        {
            Stage(_views.TokenCounts, ref staged);
        }

        return staged;
    }

    /// <summary>The reading <see cref="StageReading"/> staged for <paramref name="request"/>, from its bytes copied back.</summary>
    private ModelReading ReadingOf(byte[] bytes, ModelReadRequest request)
    {
        var layers = Options.Layers;
        var read = 0L;
        var blocks = Unstage<RoutingStateBlock>(bytes, layers, ref read);
        var loads = Unstage<LayerLoad>(bytes, _layerLoads.Length, ref read);
        var windowLoad = request.WindowLoad ? Unstage<ulong>(bytes, _views.WindowLoad.Length, ref read) : null;
        var tokenCounts = request.TokenCounts ? Unstage<ulong>(bytes, _views.TokenCounts.Length, ref read) : null;
        var steps = blocks[0].TotalRoutings;
        var windowSteps = WindowSteps(steps);
        return new ModelReading(
            steps,
            Math.Min(request.RecentSteps, windowSteps),
            loads[..layers],
            loads[layers..(2 * layers)],
            request.AlsoRecentSteps is null ? null : loads[(2 * layers)..],
            Math.Min(request.AlsoRecentSteps ?? 0, windowSteps),
            request.Totals ? [.. blocks.Select(DeviceRoutingEngine.TotalsOf)] : null,
            windowLoad,
            tokenCounts);
    }

    /// <summary>
    /// The placement's view on the device, copied there only when it differs from the one there (a reset
    /// keeps it: it is an input of reads, not a statistic); empty for none. The caller holds the reads' lock.
    /// </summary>
    private ArrayView<int> PlacementOnDevice(int[]? ranks)
    {
        if (ranks is null)
        {
            return _ranks.SubView(0, 0);
        }

        if (_ranksOnDevice is null || !ranks.AsSpan().SequenceEqual(_ranksOnDevice))
        {
            DeviceMemory.CopyFromHost<int>(Stream, _ranks, ranks);
            _placementCopies++;
            _ranksOnDevice = [.. ranks];
        }

        return _ranks;
    }

    /// <summary>Enqueues the measure of every layer's <paramref name="loads"/> into part <paramref name="part"/> of <see cref="_layerLoads"/>.</summary>
    private void Measure(ArrayView<ulong> loads, ArrayView<int> ranks, int rankCount, int part)
    {
        var layers = Options.Layers;
        _measure(Stream, layers, loads, Options.Experts, ranks, rankCount, _scratchLoads, _layerLoads.SubView(part * (long)layers, layers));
    }

    /// <summary>Enqueues a device-to-device copy of <paramref name="view"/> into the read-back buffer at <paramref name="offset"/>, which it advances.</summary>
    private void Stage<T>(ArrayView<T> view, ref long offset)
        where T : unmanaged => _reader.Stage(view, _readback, ref offset);

    private static T[] Unstage<T>(byte[] bytes, long count, ref long offset)
        where T : unmanaged => DeviceStateReader.Unstage<T>(bytes, count, ref offset);

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

    /// <remarks>
    /// The state is staged on the device and copied back with the lock released for the copy, as a read
    /// (<see cref="ReadBack"/>): the state without the window ring (what JSON saves) in the read-back
    /// buffer, one copy; with the ring, the largest part by far, copied under the lock into a device buffer of
    /// its size taken for the snapshot, then back with the lock released, a second copy (the stream drained by
    /// the first; before the window wraps, of the rows that hold steps alone), so that a step on another thread
    /// does not wait for the ring's copy.
    /// </remarks>
    /// <exception cref="InsufficientMemoryException">With the ring, the device could not hold the ring's copy; the message gives its size. The statistics are unchanged.</exception>
    public override ModelState Export(bool withRing = true)
    {
        lock (_readGate)
        {
            ThrowIfUnusable();
            using var ringCopy = withRing ? DeviceMemory.Allocate<uint>(Accelerator, _views.WindowRing.Length, "a snapshot's copy of the window ring") : null;
            var decayed = Options.UtilizationDecay is not null;
            var bytes = ReadBack(() =>
            {
                var staged = 0L;
                Stage(_views.Blocks, ref staged);
                Stage(_views.Utilization, ref staged);
                Stage(_views.UtilizationSums, ref staged);
                if (decayed)
                {
                    Stage(_views.DecayedUtilization, ref staged);
                }

                Stage(_views.TokenCounts, ref staged);
                Stage(_views.VarianceHistory, ref staged);
                Stage(_views.Control, ref staged);
                Stage(_views.WindowLoad, ref staged);
                ringCopy?.View.CopyFrom(Stream, _views.WindowRing);
                return staged;
            });

            var read = 0L;
            var entries = (long)Options.Layers * Options.Experts;
            var blocks = Unstage<RoutingStateBlock>(bytes, Options.Layers, ref read);
            var utilization = Unstage<float>(bytes, entries, ref read);
            var sums = Unstage<double>(bytes, entries, ref read);
            var decayedUtilization = decayed ? Unstage<float>(bytes, entries, ref read) : [];
            var counts = Unstage<ulong>(bytes, entries, ref read);
            var history = Unstage<float>(bytes, _views.VarianceHistory.Length, ref read);
            var control = Unstage<int>(bytes, ModelStateLayout.ControlLength, ref read);
            var load = Unstage<ulong>(bytes, _views.WindowLoad.Length, ref read);

            // The ring's own copy back, the stream drained by the first: before the window wraps only the rows of
            // its steps (as the managed engine exports them), up to Array.MaxLength counts, past what one byte array holds.
            uint[]? ring = null;
            if (ringCopy is not null)
            {
                var windowSteps = WindowSteps(blocks[0].TotalRoutings);
                ring = new uint[windowSteps < Options.Window ? windowSteps * entries : ringCopy.Length];
                _reader.ToHost(ringCopy.View.SubView(0, ring.LongLength), ring);
            }

            return StateOf(blocks, utilization, sums, decayedUtilization, counts, history, control, load, ring);
        }
    }

    /// <summary>
    /// A model's state from its arrays copied back, each layer's per-expert values <c>Experts</c> apart
    /// (none before the first step); <paramref name="control"/> gives the ring's position.
    /// </summary>
    private ModelState StateOf(
        RoutingStateBlock[] blocks, float[] utilization, double[] sums, float[] decayed, ulong[] counts, float[] history, int[] control, ulong[] load, uint[]? ring)
    {
        var steps = blocks[0].TotalRoutings;
        var experts = steps == 0 ? 0 : Options.Experts;
        var layers = new RoutingState[Options.Layers];
        for (var l = 0; l < layers.Length; l++)
        {
            var row = (l * Options.Experts)..((l * Options.Experts) + experts);
            layers[l] = DeviceStateReader.StateOf(
                blocks[l],
                utilization[row],
                sums[row],
                decayed.Length == 0 ? [] : decayed[row],
                counts[row],
                history.AsSpan(l * VarianceWindow, VarianceWindow));
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
