using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Interop;
using MoeGpuStats.Kernels.Model;

namespace MoeGpuStats.Native;

/// <summary>One C model handle: a whole model's statistics, their device objects, and the cached wrappers of the caller's buffers.</summary>
internal sealed class NativeModel : INativeHandle
{
    private readonly ModelRoutingStats _stats;
    private readonly NativeDevice? _accelerator;
    private readonly AcceleratorStream? _stream;
    private readonly CudaStreamBridge? _bridge;
    private readonly ForeignCache<int>? _ids;
    private readonly ForeignCache<long>? _ids64;
    private readonly ForeignCache<short>? _ids16;
    private int[] _hostIds = [];
    private readonly ForeignCache<int>? _validTokens;
    private readonly ForeignCache<float>? _loadBalanceLosses;
    private readonly ForeignCache<float>? _routerZLosses;

    public NativeModel(string accelerator, ModelRoutingStatsOptions options)
        : this(accelerator, options, loaded: null)
    {
    }

    /// <summary>An empty model of <paramref name="options"/>, or (where <paramref name="loaded"/> is given) one holding <paramref name="loaded"/>'s statistics: <paramref name="loaded"/> itself on the managed engine, a copy on a device.</summary>
    private NativeModel(string accelerator, ModelRoutingStatsOptions options, ModelRoutingStats? loaded)
    {
        _accelerator = NativeDevice.Open(accelerator, device => OnDevice(device, options, loaded), out var built, MoeGpuStats.Device.AcceleratorSelection.ModelBestFirst);
        if (_accelerator is null)
        {
            try
            {
                _stats = loaded ?? new ModelRoutingStats(options);
            }
            catch (InsufficientMemoryException exception)
            {
                throw NativeChecks.StateTooLarge("managed", options, exception);
            }

            return;
        }

        (_stream, _stats, _bridge) = built;
        _ids = new(_accelerator, Kind, "ids");
        _ids64 = new(_accelerator, Kind, "ids");
        _ids16 = new(_accelerator, Kind, "ids");
        _validTokens = new(_accelerator, Kind, "valid_tokens");
        _loadBalanceLosses = new(_accelerator, Kind, "load_balance_losses");
        _routerZLosses = new(_accelerator, Kind, "router_z_losses");
    }

    /// <summary>
    /// A model holding <paramref name="loaded"/>'s statistics (read from <paramref name="path"/>, and taken: kept on
    /// "managed", copied and disposed on a device). A model no device model can hold (without its window ring, or a merge
    /// of a short window) loads on "managed", where "auto" puts it unless <c>MOEGS_ACCELERATOR</c> names a device, as
    /// <see cref="ModelRoutingStats.Create(ModelRoutingStats, Microsoft.Extensions.Logging.ILogger?)"/> does.
    /// </summary>
    public static NativeModel Load(string accelerator, string path, ModelRoutingStats loaded)
    {
        try
        {
            var refusal = loaded.DeviceCopyRefusal();
            var choice = accelerator is "auto" ? NativeDevice.AutoChoice() : accelerator;
            if (refusal is not null && choice is not ("" or "managed"))
            {
                var named = accelerator is "auto" ? $"\"auto\" with {RoutingStats.AcceleratorVariable} = \"{choice}\"" : $"\"{accelerator}\"";
                if (loaded.KeepsWindowRing)
                {
                    throw new NativeArgumentException($"accelerator = {named}: {NativeChecks.Escaped(path, NativeApi.MostPathShown)} cannot go to a device ({refusal}); load it on \"managed\".");
                }

                throw new NativeArgumentException(
                    $"accelerator = {named}: {NativeChecks.Escaped(path, NativeApi.MostPathShown)} holds a model without its window ring (saved without it, not as a checkpoint), which loads on \"managed\" alone: it can be read, not recorded into.");
            }

            var model = new NativeModel(refusal is null ? accelerator : "managed", loaded.Options, loaded);
            if (!ReferenceEquals(model.Stats, loaded))
            {
                loaded.Dispose();
            }

            return model;
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }

    public Lock Gate { get; } = new();

    /// <summary>
    /// Refuses, in the C API's words, a cut of the window to its newest <paramref name="recentSteps"/> steps where the model
    /// keeps no ring and its window holds more (the library refuses it as an invalid operation, which the C API would
    /// report as a device's failure); a model without the ring pays a summary's read for the count.
    /// </summary>
    public void CheckRecentSteps(int recentSteps)
    {
        if (_stats.KeepsWindowRing)
        {
            return;
        }

        var held = _stats.Summary().WindowSteps;
        if (recentSteps < held)
        {
            throw new NativeArgumentException(
                $"recent_steps = {recentSteps}: fewer than the {held} steps the window holds, but this model keeps its window's load and not its ring of steps (loaded from a file saved without the ring, not a checkpoint): give {held} to {_stats.Options.Window} for the whole window.");
        }
    }

    /// <summary>Refuses, in the C API's words, a model without its window ring (loaded from a file without it) what only the ring holds: <paramref name="instead"/> says what to do.</summary>
    public void RequireWindowRing(long handle, string instead)
    {
        if (!_stats.KeepsWindowRing)
        {
            throw new NativeArgumentException(
                $"handle {handle}: this model keeps its window's load but not its ring of steps (loaded from a file saved without the ring, not a checkpoint): {instead}.");
        }
    }

    /// <remarks>The model waits for a read's copy back with its own lock released, so a read under this lock leaves records free.</remarks>
    public Lock ReadGate { get; } = new();

    public bool Disposed { get; private set; }

    /// <summary>Where the statistics live, in the C API's words: "cuda", "opencl", "cpu" or "managed".</summary>
    public string Kind => _stats.Backend;

    public ModelRoutingStats Stats => _stats;

    public CudaContextScope EnterDevice() => _accelerator?.Enter() ?? default;

    /// <summary>
    /// Records one step of every layer from the caller's memory (device memory of the handle's GPU on
    /// CUDA/OpenCL, host memory on the CPU accelerator and the managed engine), ordered on the
    /// producer's CUDA stream as <see cref="NativeAggregator.Record"/>. Every check (the arguments, then
    /// the wraps of the buffers) runs before the wait and the record, so a refused call changes nothing.
    /// </summary>
    public unsafe void Record(
        IntPtr ids, NativeIdType idType, int layers, int tokens, int topK, long layerStride, long tokenStride, IntPtr validTokens, IntPtr loadBalanceLosses, IntPtr routerZLosses, IntPtr stream)
    {
        var (stride, rowStride, length) = NativeChecks.ModelRecord(
            Kind, _stats.Options, ids, idType, layers, tokens, topK, layerStride, tokenStride, validTokens, loadBalanceLosses, routerZLosses, stream);
        if (_accelerator is null)
        {
            // The span overload takes no count: the rows past it are left out here, as the device engines leave them.
            var rows = validTokens == IntPtr.Zero ? tokens : Math.Clamp(*(int*)validTokens, 0, tokens);
            try
            {
                if (idType == NativeIdType.Int32)
                {
                    _stats.RecordStep(
                        new ReadOnlySpan<int>((void*)ids, (int)length), rows, topK, stride, HostLosses(loadBalanceLosses, layers), HostLosses(routerZLosses, layers), rowStride);
                }
                else
                {
                    var packed = idType == NativeIdType.Int64
                        ? HostRowsAsInts<long>(ids, layers, rows, topK, stride, rowStride)
                        : HostRowsAsInts<short>(ids, layers, rows, topK, stride, rowStride);
                    _stats.RecordStep(packed, rows, topK, 0, HostLosses(loadBalanceLosses, layers), HostLosses(routerZLosses, layers));
                }
            }
            catch (InvalidOperationException exception)
            {
                // The managed engine refuses a step that would take a count past 2^63 − 1 (a model loaded near it): the
                // step's arguments are refused, not the device, which the C API's mapping of the exception would say.
                throw new NativeArgumentException($"{ErrorText.Of(exception)}");
            }

            return;
        }

        var valid = validTokens == IntPtr.Zero ? default : _validTokens!.Wrap(validTokens, 1);
        var losses = loadBalanceLosses == IntPtr.Zero ? default : _loadBalanceLosses!.Wrap(loadBalanceLosses, layers);
        var zLosses = routerZLosses == IntPtr.Zero ? default : _routerZLosses!.Wrap(routerZLosses, layers);
        // Every wrap before the wait: a refused pointer leaves the producer's stream and the model as they were.
        var (view32, view64, view16) = length == 0 ? default : idType switch
        {
            NativeIdType.Int64 => (default(ArrayView<int>), _ids64!.Wrap(ids, length), default(ArrayView<short>)),
            NativeIdType.Int16 => (default, default, _ids16!.Wrap(ids, length)),
            _ => (_ids!.Wrap(ids, length), default, default),
        };
        var ordered = NativeDevice.WaitForProducer(_bridge, stream);
        using (EnterDevice())
        {
            switch (idType)
            {
                case NativeIdType.Int64:
                    _stats.RecordStep(view64, tokens, topK, stride, valid, losses, zLosses, rowStride);
                    break;
                case NativeIdType.Int16:
                    _stats.RecordStep(view16, tokens, topK, stride, valid, losses, zLosses, rowStride);
                    break;
                default:
                    _stats.RecordStep(view32, tokens, topK, stride, valid, losses, zLosses, rowStride);
                    break;
            }

            NativeDevice.WaitUntilCallersMemoryIsRead(Kind, _stream);
        }

        if (ordered)
        {
            _bridge!.SignalConsumer(stream);
        }
    }

    /// <summary>
    /// The valid rows of a step of int64 or int16 host ids, read as the device kernel reads them
    /// (<see cref="Int64Ids.ToInt32"/>) and packed <c>[layers, rows, topK]</c> in scratch the model keeps:
    /// the gaps between rows and the padding rows are never read.
    /// </summary>
    /// <exception cref="NativeArgumentException">More packed ids than one .NET array holds.</exception>
    private unsafe ReadOnlySpan<int> HostRowsAsInts<T>(IntPtr ids, int layers, int rows, int topK, long layerStride, long tokenStride)
        where T : unmanaged
    {
        var count = (long)layers * rows * topK;
        if (count > Array.MaxLength)
        {
            throw new NativeArgumentException(
                $"layers * tokens * top_k = {layers} * {rows} * {topK} = {count} int64 or int16 ids; the managed engine reads them into one array of at most {Array.MaxLength}.");
        }

        if (_hostIds.Length < count)
        {
            _hostIds = new int[count];
        }

        var packed = _hostIds.AsSpan(0, (int)count);
        for (var l = 0; l < layers; l++)
        {
            for (var t = 0; t < rows; t++)
            {
                var row = new ReadOnlySpan<T>((T*)ids + (l * layerStride) + (t * tokenStride), topK);
                HostIds.ToInts(row, packed.Slice(((l * rows) + t) * topK, topK));
            }
        }

        return packed;
    }

    /// <summary>
    /// Writes the model's figures, the window's over its newest <paramref name="recentSteps"/> steps (checked
    /// by the caller), and each layer's balance where an array is given (<c>Layers</c> structs each), over
    /// experts, or over ranks under <paramref name="expertRanks"/> (host memory, <c>Experts</c> ints).
    /// </summary>
    public unsafe void Summary(int recentSteps, int* expertRanks, NativeModelBalance* destination, NativeLayerBalance* window, NativeLayerBalance* sinceStart)
    {
        var (ranks, entries) = Placement(expertRanks);
        ModelRoutingSummary summary;
        using (EnterDevice())
        {
            summary = ranks is null ? _stats.Summary(recentSteps) : _stats.Summary(recentSteps, ranks);
        }

        WriteBalance(summary, entries, destination, window, sinceStart);
    }

    /// <summary>
    /// One reading of the model (<see cref="ModelRoutingStats.Read"/>: one wait on a device): the summary over
    /// the window into <paramref name="destination"/>, and into each array given (checked by the caller), its
    /// layers' balance, the balance over the newest <paramref name="recentSteps"/> steps (0: none), each layer's
    /// totals, the window load and the token counts (<c>Layers × Experts</c> values each).
    /// </summary>
    public unsafe void Read(
        int recentSteps,
        int* expertRanks,
        NativeModelBalance* destination,
        NativeLayerBalance* window,
        NativeLayerBalance* sinceStart,
        NativeModelBalance* recent,
        NativeLayerBalance* recentLayers,
        NativeLayerTotals* totals,
        ulong* windowLoad,
        ulong* expertCounts)
    {
        var (ranks, entries) = Placement(expertRanks);
        Engines.ModelReading reading;
        using (EnterDevice())
        {
            reading = _stats.Read(new()
            {
                RecentSteps = _stats.Options.Window,
                Ranks = ranks,
                RankCount = ranks is null ? 0 : entries,
                AlsoRecentSteps = recentSteps > 0 ? recentSteps : null,
                Totals = totals is not null,
                WindowLoad = windowLoad is not null,
                TokenCounts = expertCounts is not null,
            });
        }

        WriteBalance(ModelRoutingStats.Summarize(reading, entries), entries, destination, window, sinceStart);
        if (ModelRoutingStats.SummarizeRecent(reading, entries) is { } recentSummary)
        {
            WriteBalance(recentSummary, entries, recent, recentLayers, null);
        }

        if (totals is not null)
        {
            for (var l = 0; l < _stats.Layers; l++)
            {
                NativeStruct.Write(totals + l, NativeLayerTotals.From(reading.Totals![l]));
            }
        }

        reading.WindowLoad?.CopyTo(new Span<ulong>(windowLoad, reading.WindowLoad.Length));
        reading.TokenCounts?.CopyTo(new Span<ulong>(expertCounts, reading.TokenCounts.Length));
    }

    /// <summary>The placement under <paramref name="expertRanks"/> (host memory, <c>Experts</c> ints, checked) and the ranks it counts; null and the experts without one.</summary>
    private unsafe (int[]? Ranks, int Entries) Placement(int* expertRanks)
    {
        var ranks = expertRanks is null ? null : NativeChecks.Placement(new ReadOnlySpan<int>(expertRanks, _stats.Experts));
        return (ranks, ranks is null ? _stats.Experts : ranks.Max() + 1);
    }

    /// <summary>
    /// Begins a read of the summary (over the newest <paramref name="recentSteps"/> steps, 0 for the whole window,
    /// checked by the caller) and the window load without waiting (<see cref="ModelRoutingStats.BeginRead"/>),
    /// over ranks under <paramref name="expertRanks"/> (host memory, <c>Experts</c> ints) where given.
    /// </summary>
    /// <remarks>
    /// With a <paramref name="stream"/> (cuda only, checked by the caller), the read is ordered on the device
    /// against the caller's stream as a record is (<see cref="CudaStreamBridge"/>): after the work enqueued there
    /// before the call (a replayed CUDA graph's records), and before the work enqueued there after it (the next
    /// replay), with no wait on the host.
    /// </remarks>
    public unsafe NativeModelRead BeginRead(int recentSteps, int* expertRanks, IntPtr stream)
    {
        var (ranks, entries) = Placement(expertRanks);
        if (stream != IntPtr.Zero)
        {
            Order(() => _bridge!.WaitForProducer(stream));
        }

        NativeModelRead read;
        using (EnterDevice())
        {
            read = new NativeModelRead(_stats.BeginRead(recentSteps == 0 ? null : recentSteps, ranks), _stats.Layers, _stats.Experts, entries);
        }

        if (stream != IntPtr.Zero)
        {
            try
            {
                Order(() => _bridge!.SignalConsumer(stream));
            }
            catch
            {
                read.Dispose();
                throw;
            }
        }

        return read;
    }

    /// <summary>Runs a stream ordering, its refusal of a handle that is not a CUstream in the C API's words.</summary>
    private static void Order(Action order)
    {
        try
        {
            order();
        }
        catch (ArgumentException exception)
        {
            throw new NativeArgumentException($"stream: {ErrorText.Of(exception)} Allowed: a CUstream, or NULL.");
        }
    }

    /// <summary>Writes <paramref name="summary"/>'s model figures, and its layers' balance over the window and since the start into each array given.</summary>
    internal static unsafe void WriteBalance(ModelRoutingSummary summary, int entries, NativeModelBalance* destination, NativeLayerBalance* window, NativeLayerBalance* sinceStart)
    {
        NativeStruct.Write(destination, NativeModelBalance.From(summary, entries));
        for (var l = 0; l < summary.Window.Layers.Count; l++)
        {
            if (window is not null)
            {
                NativeStruct.Write(window + l, NativeLayerBalance.From(summary.Window.Layers[l]));
            }

            if (sinceStart is not null)
            {
                NativeStruct.Write(sinceStart + l, NativeLayerBalance.From(summary.SinceStart.Layers[l]));
            }
        }
    }

    /// <summary>
    /// Where the model's token counts and window load lie (<see cref="ModelRoutingStats.DeviceArrays"/>),
    /// the pending step folded first, and ordered with a reader: on CUDA the fold waits on the device
    /// for the work enqueued so far on the reader's <paramref name="stream"/> (NULL: the default stream
    /// of the caller's current context), a replayed CUDA graph's record among it, and the stream then
    /// waits for the fold; with NULL and no current context nothing can be ordered, so the host waits
    /// for the fold, as it does on the CPU accelerator. <c>Accelerator</c> is left for the caller.
    /// </summary>
    /// <exception cref="NativeArgumentException">A model on managed or opencl, a stream off CUDA, or a stream that is not a CUstream.</exception>
    public NativeModelArrays DeviceArrays(long handle, IntPtr stream)
    {
        NativeChecks.DeviceArrays(handle, Kind, stream);

        // Before ILGPU's context is made current: the caller's context is what a NULL stream means. The
        // fold writes the step control, which a record replayed on the stream writes too: it must not overlap one.
        var ordered = NativeDevice.WaitForProducer(_bridge, stream);
        ModelDeviceArrays arrays;
        using (EnterDevice())
        {
            arrays = _stats.DeviceArrays();
            if (!ordered)
            {
                arrays.Stream.Synchronize();
            }
        }

        if (ordered)
        {
            _bridge!.SignalConsumer(stream);
        }

        return new NativeModelArrays
        {
            TokenCounts = arrays.TokenCounts.LoadEffectiveAddressAsPtr(),
            WindowLoad = arrays.WindowLoad.LoadEffectiveAddressAsPtr(),
            Steps = arrays.Steps,
            WindowSteps = arrays.WindowSteps,
            Layers = arrays.Layers,
            Experts = arrays.Experts,
            Synchronized = ordered ? 0 : 1,
        };
    }

    public void Dispose()
    {
        Disposed = true;
        Disposal.All(_ids, _ids64, _ids16, _validTokens, _loadBalanceLosses, _routerZLosses, _bridge, _stats, _stream, _accelerator);
    }

    private static unsafe ReadOnlySpan<float> HostLosses(IntPtr losses, int layers) =>
        losses == IntPtr.Zero ? default : new ReadOnlySpan<float>((void*)losses, layers);

    /// <summary>The model (empty, or a copy of <paramref name="loaded"/>) on a stream of its own, which the CUDA bridge orders against the producer's.</summary>
    private static (AcceleratorStream, ModelRoutingStats, CudaStreamBridge?) OnDevice(Accelerator accelerator, ModelRoutingStatsOptions options, ModelRoutingStats? loaded)
    {
        var stream = accelerator.CreateStream();
        ModelRoutingStats? model = null;
        try
        {
            model = loaded is null ? ModelRoutingStats.OnDevice(accelerator, options, stream) : ModelRoutingStats.OnDevice(accelerator, loaded, stream);
            return (stream, model, accelerator.AcceleratorType == AcceleratorType.Cuda ? new CudaStreamBridge(model) : null);
        }
        catch (Exception exception)
        {
            model?.Dispose();
            stream.Dispose();
            if (exception is InsufficientMemoryException memory)
            {
                // The engine's name, as DeviceModelEngine.Name gives it: "cuda", "opencl" or "cpu".
                throw NativeChecks.StateTooLarge(accelerator.AcceleratorType.ToString().ToLowerInvariant(), options, memory);
            }

            throw;
        }
    }
}
