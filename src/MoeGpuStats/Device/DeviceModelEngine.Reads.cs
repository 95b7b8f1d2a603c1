using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using MoeGpuStats.Engines;
using MoeGpuStats.Kernels;
using MoeGpuStats.Kernels.Model;

namespace MoeGpuStats.Device;

/// <summary>Reads: the pending step folded, the reading staged on the device and copied back in one copy, the only wait.</summary>
internal sealed partial class DeviceModelEngine
{
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
}
