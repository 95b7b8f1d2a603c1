using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Collections;
using MoeGpuStats.Kernels.Model;
using static System.FormattableString;

namespace MoeGpuStats.Engines;

/// <summary>
/// A model in managed memory: one <see cref="ManagedRoutingEngine"/> per layer, so that each layer
/// is exactly a single-layer engine fed its ids, and the window of expert load (<see cref="ExpertLoadWindow"/>).
/// A step costs the layers' records and the window's update: O(ids) for a layer of at most
/// <see cref="ExpertLoadWindow.ListedIds"/> ids among more experts, O(experts) otherwise.
/// </summary>
internal sealed class ManagedModelEngine : ModelRoutingEngine
{
    /// <summary>
    /// The most counts and ids the layers of a window shorter than the variance history keep together for their
    /// deferred variances (512 MiB: a 64 × 1,024 model's copies fit). Each layer's own bound, 16 MiB, would let 1,024 layers
    /// of 4,096 experts take 16 GB at their first step; beyond the budget a layer computes its variances as it records.
    /// </summary>
    private const int DeferredCounts = 1 << 27;

    private readonly ManagedRoutingEngine[] _layers;
    private readonly ReadOnlyLayerEngine[] _readers;
    private readonly ExpertLoadWindow _window;
    private int _windowSteps;
    private bool _layersReserved;
    private bool _disposed;
    private ulong _steps;
    private int[] _hostIds = [];
    private int[] _stridedIds = [];
    private long[] _staged = [];
    private readonly float[] _hostLosses;

    /// <summary>An empty model, or one holding <paramref name="state"/> (validated by the caller), whose window arrays it takes over: each caller passes a state of its own.</summary>
    public ManagedModelEngine(ModelRoutingStatsOptions options, ModelState? state = null)
        : base(options)
    {
        _window = state is null
            ? new ExpertLoadWindow(options.Layers, options.Experts, options.Window)
            : new ExpertLoadWindow(options.Layers, options.Experts, options.Window, state.WindowLoad, state.WindowRing, state.WindowPosition);

        // A window at least as long as the variance history holds every batch the history defers: the layers read
        // their variances from its rows instead of copying each step's histograms (E ints a layer, cold memory).
        // A shorter window's layers copy, sharing one budget.
        var keepsBatches = options.Window >= ManagedRoutingEngine.HistoryWindow;
        var layerBudget = Math.Min(LoadVarianceWindow.MaxDeferredCounts, DeferredCounts / options.Layers);
        var layerOptions = options.LayerOptions;
        _layers = new ManagedRoutingEngine[options.Layers];
        for (var l = 0; l < _layers.Length; l++)
        {
            _layers[l] = new ManagedRoutingEngine(layerOptions, state?.Layers[l], Gate, keepsBatches ? _window.Layer(l) : null, layerBudget);
        }

        _hostLosses = new float[2 * options.Layers];
        _readers = _layers.Select((layer, l) => new ReadOnlyLayerEngine(layer, l, Gate, () => ThrowIfDisposed(_disposed))).ToArray();
        _windowSteps = state?.WindowSteps ?? 0;
        _steps = state?.Steps ?? 0;
    }

    public override string Name => "managed";

    public override string DeviceName => "managed";

    public override bool KeepsWindowRing
    {
        get
        {
            lock (Gate)
            {
                return _window.CanSlide;
            }
        }
    }

    public override void RecordStep<T>(ArrayView<T> ids, int tokens, int topK, long layerStride, long tokenStride, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
    {
        // The layers' ids come to the host packed as ints, without the gaps strides leave between rows.
        var perLayer = (long)tokens * topK;
        var packed = CheckPacked(tokens, topK);
        var asIs = tokenStride == topK && typeof(T) == typeof(int);

        // Layers one after another are copied a layer at a time; interleaved ones, the step's whole span at once.
        var layerExtent = ModelIdLayout.LayerExtent(tokens, topK, tokenStride)!.Value;
        var layerByLayer = Options.Layers == 1 || layerStride >= layerExtent;
        var span = layerByLayer ? layerExtent : ModelIdLayout.StepExtent(Options.Layers, layerStride, tokens, topK, tokenStride)!.Value;
        if (!asIs && span > Array.MaxLength)
        {
            throw new ArgumentException(
                Invariant($"The ids span {span:N0} values {(layerByLayer ? "in a layer" : "in the step")} from the first to the last; the managed engine copies them to the host, at most {Array.MaxLength:N0}."),
                "topKExpertIds");
        }

        lock (Gate)
        {
            var length = (int)packed;
            if (_hostIds.Length < length)
            {
                _hostIds = new int[length];
            }

            if (!asIs && perLayer > 0 && layerByLayer)
            {
                for (var l = 0; l < Options.Layers; l++)
                {
                    PackLayer(StagedAsInts(ids.SubView(l * layerStride, span)), tokens, topK, tokenStride, _hostIds.AsSpan((int)(l * perLayer)));
                }
            }
            else if (!asIs && perLayer > 0)
            {
                Pack(StagedAsInts(ids.SubView(0, span)), tokens, topK, layerStride, tokenStride, _hostIds);
            }
            else if (layerStride == perLayer && length > 0)
            {
                ids.Cast<int>().SubView(0, length).CopyToCPU(_hostIds.AsSpan(0, length));
            }
            else if (perLayer > 0)
            {
                for (var l = 0; l < Options.Layers; l++)
                {
                    ids.Cast<int>().SubView(l * layerStride, perLayer).CopyToCPU(_hostIds.AsSpan((int)(l * perLayer), (int)perLayer));
                }
            }

            var valid = tokens;
            if (validTokens.Length > 0)
            {
                Span<int> count = stackalloc int[1];
                validTokens.SubView(0, 1).CopyToCPU(count);
                valid = Math.Clamp(count[0], 0, tokens);
            }

            var losses = HostLosses(loadBalanceLosses, 0);
            var zLosses = HostLosses(routerZLosses, Options.Layers);
            RecordLocked(_hostIds.AsSpan(0, length), valid, topK, perLayer, losses, zLosses);
        }
    }

    /// <summary>
    /// A device view's losses (empty, or one per layer) copied into the host buffer at <paramref name="at"/>, as they
    /// are: <see cref="HostLoss"/> reads each non-finite one as 0, as for a host span.
    /// </summary>
    private Span<float> HostLosses(ArrayView<float> losses, int at)
    {
        if (losses.Length == 0)
        {
            return [];
        }

        var host = _hostLosses.AsSpan(at, Options.Layers);
        losses.SubView(0, host.Length).CopyToCPU(host);
        return host;
    }

    public override void RecordStep(ReadOnlySpan<int> ids, int tokens, int topK, long layerStride, long tokenStride, ReadOnlySpan<float> loadBalanceLosses, ReadOnlySpan<float> routerZLosses)
    {
        if (tokenStride == topK)
        {
            lock (Gate)
            {
                RecordLocked(ids, tokens, topK, layerStride, loadBalanceLosses, routerZLosses);
            }

            return;
        }

        var length = (int)CheckPacked(tokens, topK);
        lock (Gate)
        {
            if (_hostIds.Length < length)
            {
                _hostIds = new int[length];
            }

            Pack(ids, tokens, topK, layerStride, tokenStride, _hostIds);
            RecordLocked(_hostIds.AsSpan(0, length), tokens, topK, (long)tokens * topK, loadBalanceLosses, routerZLosses);
        }
    }

    /// <summary>
    /// <paramref name="ids"/> copied to the host and read as ints, as the device kernel reads them
    /// (<see cref="Int64Ids.ToInt32"/>), into scratch the engine keeps. The caller holds the lock.
    /// </summary>
    private Span<int> StagedAsInts<T>(ArrayView<T> ids)
        where T : unmanaged
    {
        var count = (int)ids.Length;
        if (_stridedIds.Length < count)
        {
            _stridedIds = new int[count];
        }

        var ints = _stridedIds.AsSpan(0, count);
        if (typeof(T) == typeof(int))
        {
            ids.Cast<int>().CopyToCPU(ints);
            return ints;
        }

        // Staged in longs, which hold any id type: as many ids fit as the ints they become.
        var longs = ((long)count * Unsafe.SizeOf<T>() + sizeof(long) - 1) / sizeof(long);
        if (_staged.Length < longs)
        {
            _staged = new long[longs];
        }

        var staged = MemoryMarshal.Cast<long, T>(_staged.AsSpan(0, (int)longs))[..count];
        ids.CopyToCPU(staged);
        HostIds.ToInts<T>(staged, ints);
        return ints;
    }

    /// <summary>The ids of a step packed <c>[layers, tokens, topK]</c>, checked to fit one .NET array.</summary>
    /// <exception cref="ArgumentException">More than <see cref="Array.MaxLength"/> ids.</exception>
    private long CheckPacked(int tokens, int topK)
    {
        var packed = Options.Layers * (long)tokens * topK;
        return packed <= Array.MaxLength
            ? packed
            : throw new ArgumentException(
                Invariant($"{Options.Layers} layers of tokens * topK = {tokens} * {topK} ids are {packed:N0} ids; the managed engine copies a step's ids to the host, at most {Array.MaxLength:N0} of them."),
                "topKExpertIds");
    }

    /// <summary>Copies each row of the step's ids, where the strides put it, into <paramref name="packed"/> as <c>[layers, tokens, topK]</c>.</summary>
    /// <remarks>
    /// Token by token, each token's layers in turn: interleaved ids (<c>[tokens, layers, k]</c>) are then
    /// read in the order they lie, where layer by layer would stride through the whole step once per layer.
    /// </remarks>
    private void Pack(ReadOnlySpan<int> ids, int tokens, int topK, long layerStride, long tokenStride, Span<int> packed)
    {
        var perLayer = tokens * topK;
        for (var t = 0; t < tokens; t++)
        {
            for (var l = 0; l < Options.Layers; l++)
            {
                CopyRow(ids, (int)((l * layerStride) + (t * tokenStride)), packed, (l * perLayer) + (t * topK), topK);
            }
        }
    }

    /// <summary>Copies <paramref name="topK"/> ids: a row is a handful of ints, fewer than a span copy pays off for.</summary>
    private static void CopyRow(ReadOnlySpan<int> ids, int from, Span<int> packed, int to, int topK)
    {
        var source = ids.Slice(from, topK);
        var target = packed.Slice(to, topK);
        for (var j = 0; j < source.Length; j++)
        {
            target[j] = source[j];
        }
    }

    /// <summary>Copies one layer's rows, <paramref name="tokenStride"/> apart from the start of <paramref name="ids"/>, into <paramref name="packed"/> side by side.</summary>
    private static void PackLayer(ReadOnlySpan<int> ids, int tokens, int topK, long tokenStride, Span<int> packed)
    {
        for (var t = 0; t < tokens; t++)
        {
            CopyRow(ids, (int)(t * tokenStride), packed, t * topK, topK);
        }
    }

    private void RecordLocked(ReadOnlySpan<int> ids, int tokens, int topK, long layerStride, ReadOnlySpan<float> loadBalanceLosses, ReadOnlySpan<float> routerZLosses)
    {
        if (!_window.CanSlide)
        {
            throw new InvalidOperationException(
                "This model's window keeps its load but not its ring of steps (a model read from JSON other than a checkpoint, or a merge or snapshot of one): it can be read and merged, not recorded into (after Reset() it records, taking its ring at its first step); a checkpoint, RoutingStatsFile.Save(model, path, withWindowRing: true), records on.");
        }

        // A snapshot or merge holds its window's steps alone until its first step: the whole ring comes now, before any
        // count changes, as every layer's arrays do (below, once the step is known to be kept).
        _window.EnsureWhole();
        var experts = Options.Experts;
        var layers = Options.Layers;
        var stepIds = tokens * topK;
        // A step of no token reads no id, wherever its strides would put the layers (past an empty span).
        layerStride = stepIds == 0 ? 0 : layerStride;
        if (Options.SkipEmptySteps && !HoldsToken(ids, layers, stepIds, topK, layerStride))
        {
            return;
        }

        ReserveLayers();
        for (var l = 0; l < layers; l++)
        {
            if (!_layers[l].FitsUnchecked((ulong)stepIds))
            {
                _layers[l].CheckStep(ids.Slice(checked((int)(l * layerStride)), stepIds), experts, tokens, topK, l);
            }
        }

        Span<int> listed = stackalloc int[ExpertLoadWindow.ListedIds];
        var copied = _window.Lists(stepIds);
        for (var l = 0; l < layers; l++)
        {
            scoped ReadOnlySpan<int> layerIds = ids.Slice(checked((int)(l * layerStride)), stepIds);
            if (copied)
            {
                // The window keeps these ids as a list: the layer counts the same copy, so a caller's buffer that
                // changes between the two reads cannot leave the window's load above the layer's counts.
                layerIds.CopyTo(listed);
                layerIds = listed[..stepIds];
            }

            var counts = _layers[l].RecordAndCount(
                layerIds, experts, tokens, topK, HostLoss(loadBalanceLosses, l), HostLoss(routerZLosses, l));
            _window.Add(l, layerIds, counts);
        }

        _window.Advance();
        _windowSteps = Math.Min(_windowSteps + 1, Options.Window);
        _steps++;
    }

    /// <summary>
    /// Layer <paramref name="layer"/>'s loss of a host span the checks found finite, read again as a device loss is
    /// (<see cref="ModelRecordKernel.FiniteOrZero"/>): a caller's buffer that changes meanwhile cannot put a NaN in the sums.
    /// </summary>
    private static float HostLoss(ReadOnlySpan<float> losses, int layer) => losses.IsEmpty ? 0f : ModelRecordKernel.FiniteOrZero(losses[layer]);

    /// <summary>
    /// Allocates every layer's arrays before a step records any layer, and before any layer takes its own, so that
    /// running out of memory changes nothing: after construction and after a reset.
    /// </summary>
    private void ReserveLayers()
    {
        if (_layersReserved)
        {
            return;
        }

        var arrays = new ManagedRoutingEngine.ExpertArrays?[_layers.Length];
        for (var l = 0; l < _layers.Length; l++)
        {
            arrays[l] = _layers[l].ReserveRecord(Options.Experts);
        }

        for (var l = 0; l < _layers.Length; l++)
        {
            if (arrays[l] is { } started)
            {
                _layers[l].Adopt(started);
            }
        }

        _layersReserved = true;
    }

    /// <summary>Whether any layer's rows (<paramref name="stepIds"/> ids each, <paramref name="layerStride"/> apart) hold a row that is not padding (k empty slots), as the device kernel decides it.</summary>
    private static bool HoldsToken(ReadOnlySpan<int> ids, int layers, int stepIds, int topK, long layerStride)
    {
        for (var l = 0; l < layers; l++)
        {
            var layerIds = ids.Slice(checked((int)(l * layerStride)), stepIds);
            for (var row = 0; row < stepIds; row += topK)
            {
                if (layerIds.Slice(row, topK).ContainsAnyExcept(ExpertHistogram.EmptySlot))
                {
                    return true;
                }
            }
        }

        return false;
    }

    public override RoutingStatsEngine Layer(int layer) => _readers[layer];

    public override void WindowLoad(int recentSteps, Span<ulong> destination)
    {
        lock (Gate)
        {
            RecentLoad(recentSteps, destination);
        }
    }

    /// <summary>Whether the window's steps keep its running sum (<see cref="ExpertLoadWindow.KeepsSum"/>).</summary>
    internal bool WindowKeepsSum
    {
        get
        {
            lock (Gate)
            {
                return _window.KeepsSum;
            }
        }
    }

    public override bool CanCutWindow(int recentSteps)
    {
        lock (Gate)
        {
            return recentSteps >= _windowSteps || _window.CanSlide;
        }
    }

    /// <summary>
    /// The window's running sum where the steps asked cover it, else the sum of the newest steps' rows, into the first
    /// <c>Layers × Experts</c> values of <paramref name="destination"/>. Under the lock (<see cref="CanCutWindow"/> takes it again).
    /// </summary>
    private void RecentLoad(int recentSteps, Span<ulong> destination)
    {
        if (!CanCutWindow(recentSteps))
        {
            throw NoRecentSteps(recentSteps, _windowSteps);
        }

        if (recentSteps >= _windowSteps)
        {
            _window.Load.CopyTo(destination);
            return;
        }

        // The length alone: reading Load would sum a ring whose steps only wrote their rows, and count as a read.
        var load = destination[..(Options.Layers * Options.Experts)];
        load.Clear();
        _window.AddNewest(recentSteps, load);
    }

    /// <remarks>
    /// The loads measured are rented from the shared pool unless the reading returns them, so that a summary read
    /// every step allocates its figures alone, not two <c>[layers, experts]</c> arrays besides.
    /// </remarks>
    public override ModelReading Read(ModelReadRequest request)
    {
        var size = Options.Layers * Options.Experts;
        var loads = ArrayPool<ulong>.Shared.Rent(size);
        var sinceStart = request.TokenCounts ? new ulong[size] : ArrayPool<ulong>.Shared.Rent(size);
        try
        {
            lock (Gate)
            {
                var experts = Options.Experts;
                // A pooled array holds what its last renter left: a layer before its first step has no counts to copy.
                if (!request.TokenCounts)
                {
                    sinceStart.AsSpan(0, size).Clear();
                }
                for (var l = 0; l < _layers.Length; l++)
                {
                    var counts = _layers[l].ExpertTokenCounts;
                    for (var e = 0; e < counts.Count; e++)
                    {
                        sinceStart[l * experts + e] = counts[e];
                    }
                }

                var (ranks, rankCount) = (request.Ranks, request.RankCount);
                RecentLoad(request.RecentSteps, loads);
                var window = Measure(loads, ranks, rankCount);
                LayerLoad[]? recent = null;
                if (request.AlsoRecentSteps is { } steps && CanCutWindow(steps))
                {
                    RecentLoad(steps, loads);
                    recent = Measure(loads, ranks, rankCount);
                }

                return new ModelReading(
                    _steps,
                    Math.Min(request.RecentSteps, _windowSteps),
                    window,
                    Measure(sinceStart, ranks, rankCount),
                    recent,
                    recent is null ? 0 : Math.Min(request.AlsoRecentSteps!.Value, _windowSteps),
                    request.Totals ? [.. _layers.Select(layer => layer.Totals)] : null,
                    request.WindowLoad ? _window.Load.ToArray() : null,
                    request.TokenCounts ? sinceStart : null);
            }
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(loads);
            if (!request.TokenCounts)
            {
                ArrayPool<ulong>.Shared.Return(sinceStart);
            }
        }
    }

    /// <summary>Each layer's figures, with <see cref="LayerBalanceKernel.Measure"/> as the device measures them.</summary>
    private LayerLoad[] Measure(ulong[] loads, int[]? ranks, int rankCount)
    {
        var experts = Options.Experts;
        var results = new LayerLoad[Options.Layers];
        var entries = ranks is null ? experts : rankCount;
        var copy = ArrayPool<ulong>.Shared.Rent(entries);
        var scratch = new ArrayLoads(copy);
        try
        {
            for (var l = 0; l < results.Length; l++)
            {
                if (ranks is null)
                {
                    results[l] = LayerBalanceKernel.Measure(new ArrayLoads(loads), (long)l * experts, experts, scratch, 0);
                }
                else
                {
                    copy.AsSpan(0, entries).Clear();
                    for (var e = 0; e < experts; e++)
                    {
                        copy[ranks[e]] += loads[(l * experts) + e];
                    }

                    results[l] = LayerBalanceKernel.Measure(scratch, 0, rankCount, scratch, 0);
                }

                copy.AsSpan(0, entries).Sort();
                LayerBalanceKernel.AddOrderFigures(ref results[l], scratch, 0, entries);
            }
        }
        finally
        {
            ArrayPool<ulong>.Shared.Return(copy);
        }

        return results;
    }

    public override void Reset()
    {
        lock (Gate)
        {
            _window.Clear();
            foreach (var layer in _layers)
            {
                layer.Reset();
            }

            (_windowSteps, _steps, _layersReserved) = (0, 0UL, false);
        }
    }

    /// <summary>Ends the layers' handles too, as on a device (the arrays are the collector's).</summary>
    public override void Dispose() => _disposed = true;

    public override ModelState Export(bool withRing = true)
    {
        lock (Gate)
        {
            return new ModelState
            {
                Steps = _steps,
                WindowSteps = _windowSteps,
                WindowPosition = _window.Position,
                Layers = _layers.Select(layer => layer.Export()).ToArray(),
                WindowLoad = _window.Load.ToArray(),
                WindowRing = withRing ? _window.ToRing(_windowSteps) : null,
            };
        }
    }
}
