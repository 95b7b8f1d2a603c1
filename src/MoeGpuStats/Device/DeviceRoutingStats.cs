using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Engines;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Device;

/// <summary>
/// Routing statistics kept in the memory of one ILGPU accelerator and updated there. Recording
/// from top-k ids enqueues one kernel launch on <see cref="Stream"/> and returns without waiting;
/// only reads synchronize, once each, and copy back only what they return.
/// </summary>
/// <remarks>
/// A record from top-k ids costs one launch: its groups histogram their shares of the ids in shared
/// memory while one more group folds the previous record into the state (the seed's arithmetic,
/// including the load variance summed in expert order). So the last record stays pending until
/// the next record or read: a read first folds it (one more small launch), then runs. A query
/// costs one launch of one group and one copy of a 36-byte result. Calls are serialized by a
/// lock, so one instance may be shared between threads. At most
/// <see cref="RoutingStatsOptions.MaxDeviceExperts"/> experts.
/// </remarks>
public sealed class DeviceRoutingStats : IDisposable
{
    private readonly Lock _lock = new();
    private readonly RoutingStatsOptions _options;
    private readonly bool _ownsStream;
    private readonly RoutingRecordLauncher _record;
    private readonly UtilizationQueryLauncher _query;
    private readonly MemoryBuffer1D<RoutingStateBlock, Stride1D.Dense> _state;
    private readonly MemoryBuffer1D<ulong, Stride1D.Dense> _batchHistogram;
    private readonly MemoryBuffer1D<ulong, Stride1D.Dense> _batchInvalid;
    private readonly MemoryBuffer1D<ulong, Stride1D.Dense> _batchPaddedTokens;
    private readonly MemoryBuffer1D<double, Stride1D.Dense> _utilizationSums;
    private readonly MemoryBuffer1D<ulong, Stride1D.Dense> _tokenCounts;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _utilization;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _decayedUtilization;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _varianceHistory;
    private readonly MemoryBuffer1D<UtilizationQueryResult, Stride1D.Dense> _queryResult;
    private readonly ulong[] _hostHistogram = new ulong[RoutingStatsOptions.MaxDeviceExperts];
    private readonly RoutingStateViews _views;
    private MemoryBuffer1D<int, Stride1D.Dense> _hostIds;
    private RecordArguments _pending = NoRecord;
    private int _experts;
    private bool _disposed;

    /// <summary>Allocates the state on <paramref name="accelerator"/> and loads the kernels.</summary>
    /// <param name="accelerator">The accelerator that holds the state; the caller keeps ownership.</param>
    /// <param name="options">Expert count for top-k ids, capacity, decay; null for the defaults.</param>
    /// <param name="stream">The stream to order work on; null for a stream of its own.</param>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or <see cref="RoutingStatsOptions.Experts"/> exceeds the device limit.</exception>
    /// <exception cref="InsufficientMemoryException">The device could not allocate the state; the message gives the size.</exception>
    public DeviceRoutingStats(Accelerator accelerator, RoutingStatsOptions? options = null, AcceleratorStream? stream = null)
        : this(accelerator, options, stream, RoutingRecordKernel.Create)
    {
    }

    /// <summary>As the public constructor, with the record kernel tuned by <paramref name="policy"/> (the device check sweeps policies).</summary>
    internal DeviceRoutingStats(Accelerator accelerator, RoutingStatsOptions? options, AcceleratorStream? stream, RecordKernelPolicy policy)
        : this(accelerator, options, stream, accelerator => RoutingRecordKernel.Create(accelerator, policy))
    {
    }

    /// <summary>As the public constructor, with the record kernel that <paramref name="createRecord"/> loads on the accelerator.</summary>
    internal DeviceRoutingStats(Accelerator accelerator, RoutingStatsOptions? options, AcceleratorStream? stream, Func<Accelerator, RoutingRecordLauncher> createRecord)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        _options = options ?? new RoutingStatsOptions();
        _options.Validate();
        if (_options.Experts > RoutingStatsOptions.MaxDeviceExperts)
        {
            throw new ArgumentOutOfRangeException(nameof(options), _options.Experts, $"The device engine holds at most {RoutingStatsOptions.MaxDeviceExperts} experts.");
        }

        // Loaded before anything is allocated, so a kernel the accelerator refuses leaks nothing.
        _record = createRecord(accelerator);
        _query = UtilizationQueryKernel.Create(accelerator);
        Accelerator = accelerator;
        _ownsStream = stream is null;
        Stream = stream ?? accelerator.CreateStream();
        const int experts = RoutingStatsOptions.MaxDeviceExperts;
        try
        {
            _state = Allocate<RoutingStateBlock>(1);
            _batchHistogram = Allocate<ulong>(RoutingRecordKernel.BatchSlots * RoutingRecordKernel.SlotLength);
            _batchInvalid = Allocate<ulong>(RoutingRecordKernel.BatchSlots);
            _batchPaddedTokens = Allocate<ulong>(RoutingRecordKernel.BatchSlots);
            _utilizationSums = Allocate<double>(experts);
            _tokenCounts = Allocate<ulong>(experts);
            _utilization = Allocate<float>(experts);
            _decayedUtilization = Allocate<float>(experts);
            _varianceHistory = Allocate<float>(RoutingRecordKernel.VarianceWindow);
            _queryResult = Allocate<UtilizationQueryResult>(1);
            _hostIds = Allocate<int>(1);
        }
        catch (InsufficientMemoryException)
        {
            // A device that is nearly full (a framework's caching allocator) can refuse a later
            // buffer; the earlier ones would otherwise stay allocated until a finalizer ran.
            FreeDeviceMemory();
            throw;
        }

        _views = new RoutingStateViews
        {
            State = _state.View,
            BatchHistogram = _batchHistogram.View,
            BatchInvalid = _batchInvalid.View,
            BatchPaddedTokens = _batchPaddedTokens.View,
            UtilizationSums = _utilizationSums.View,
            TokenCounts = _tokenCounts.View,
            Utilization = _utilization.View,
            DecayedUtilization = _decayedUtilization.View,
            VarianceHistory = _varianceHistory.View,
        };
        ClearDevice();
    }

    /// <summary>The accelerator that holds the state.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The stream every record and read is ordered on.</summary>
    public AcceleratorStream Stream { get; }

    /// <summary>The options this engine was made with.</summary>
    public RoutingStatsOptions Options => _options;

    /// <summary>The expert count of the state (0 before the first record); known on the host, no synchronization.</summary>
    public int ExpertCount => _experts;

    /// <summary>
    /// Enqueues one record from the router's top-k ids, laid out <c>[tokens, topK]</c>, and returns
    /// without waiting for the device. Ids outside <c>[0, E)</c> are counted as invalid.
    /// </summary>
    /// <remarks>
    /// The ids are read when <see cref="Stream"/> reaches the record, not when this call returns:
    /// write them on <see cref="Stream"/>, or order the writer's stream against it (on CUDA with
    /// <see cref="Interop.CudaStreamBridge"/>). Another stream's write can overtake the record; on
    /// OpenCL, whose queues have no implicit order, it did (PoCL 5, counts of the next batch).
    /// </remarks>
    /// <param name="topKExpertIds">At least <c>tokens * topK</c> ids on <see cref="Accelerator"/> (memory owned by anyone).</param>
    /// <param name="tokens">Tokens in the batch.</param>
    /// <param name="topK">Experts per token.</param>
    /// <param name="loadBalanceLoss">The router's load-balancing loss, if it computed one on the host.</param>
    /// <param name="routerZLoss">The router's z-loss, if it computed one on the host.</param>
    /// <param name="tokensDropped">Dropped tokens; ignored when <see cref="RoutingStatsOptions.ExpertCapacity"/> derives them.</param>
    /// <exception cref="ArgumentException">The view is invalid, too short or on another accelerator, or a scalar is out of range.</exception>
    /// <exception cref="InvalidOperationException">No expert count is known (set <see cref="RoutingStatsOptions.Experts"/>).</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public void RecordRouting(ArrayView<int> topKExpertIds, int tokens, int topK, float loadBalanceLoss = 0f, float routerZLoss = 0f, int tokensDropped = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        RecordChecks.Validate(_options, topKExpertIds.IsValid ? topKExpertIds.Length : 0, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss, nameof(topKExpertIds));
        RecordValidated(topKExpertIds, RecordChecks.ResolveExperts(_options, _experts), tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);
    }

    /// <summary>The record from a view, for callers that ran <see cref="RecordChecks"/> already (the facade).</summary>
    internal void RecordValidated(ArrayView<int> topKExpertIds, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            CheckExperts(experts);
            var length = (long)tokens * topK;
            if (length > 0 && topKExpertIds.GetAccelerator() != Accelerator)
            {
                throw new ArgumentException(
                    $"The view lives on '{topKExpertIds.GetAccelerator()?.Name}', not on this engine's accelerator '{Accelerator.Name}'.",
                    nameof(topKExpertIds));
            }

            Launch(length > 0 ? topKExpertIds.SubView(0, length) : EmptyIds, Arguments(experts, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss));
        }
    }

    /// <summary>
    /// Records a batch of top-k ids that is on the host: one copy to the device (ILGPU's host copy
    /// waits for the stream, so the caller may reuse the span at once), then one launch.
    /// </summary>
    /// <exception cref="ArgumentException">Too few ids, or a scalar is out of range.</exception>
    /// <exception cref="InvalidOperationException">No expert count is known.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public void RecordRouting(ReadOnlySpan<int> topKExpertIds, int tokens, int topK, float loadBalanceLoss = 0f, float routerZLoss = 0f, int tokensDropped = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        RecordChecks.Validate(_options, topKExpertIds.Length, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss, nameof(topKExpertIds));
        RecordValidated(topKExpertIds, RecordChecks.ResolveExperts(_options, _experts), tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);
    }

    /// <summary>The record from host ids, for callers that ran <see cref="RecordChecks"/> already (the facade).</summary>
    internal void RecordValidated(ReadOnlySpan<int> topKExpertIds, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            CheckExperts(experts);
            var length = tokens * topK;
            if (_hostIds.Length < length)
            {
                var grown = Allocate<int>(length);
                // The pending record's launch may still be reading the old buffer; a free does not
                // wait for it on every API (CUDA's may, OpenCL's defers, neither is ILGPU's promise).
                Stream.Synchronize();
                _hostIds.Dispose();
                _hostIds = grown;
            }

            var view = _hostIds.View.SubView(0, length);
            view.CopyFromCPU(Stream, topKExpertIds[..length]);
            Launch(view, Arguments(experts, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss));
        }
    }

    /// <summary>
    /// Records a decision whose histogram is on the host: one copy of E counts to the device
    /// (synchronous, so the caller may reuse the decision at once) and one launch.
    /// </summary>
    /// <exception cref="ArgumentException">The decision is invalid (see <see cref="RoutingStats.RecordRouting(RoutingDecision)"/>) or has too many experts.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public void RecordRouting(RoutingDecision decision)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        RoutingDecisionValidator.Validate(decision, nameof(decision));
        RecordValidated(decision);
    }

    /// <summary>The record of a decision that <see cref="RoutingDecisionValidator"/> accepted already (the facade).</summary>
    internal void RecordValidated(RoutingDecision decision)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var counts = decision.ExpertCapacities;
            if (counts.Count > RoutingStatsOptions.MaxDeviceExperts)
            {
                throw new ArgumentException($"The decision has {counts.Count} experts; the device engine holds at most {RoutingStatsOptions.MaxDeviceExperts}.", nameof(decision));
            }

            var staged = _hostHistogram.AsSpan(0, counts.Count);
            for (var i = 0; i < staged.Length; i++)
            {
                staged[i] = (ulong)counts[i];
            }

            // CopyFromCPU waits for the stream, so the staging array is free again when it returns;
            // the slot is free because the launch that folded its last record is done.
            _batchHistogram.View.SubView((long)NextSlot * RoutingRecordKernel.SlotLength, staged.Length).CopyFromCPU(Stream, staged);
            // TopK 0: a histogram the caller counted, whose units are tokens, and no capacity derives drops.
            var arguments = Arguments(counts.Count, decision.TotalTokens, topK: 0, decision.TokensDropped, decision.LoadBalanceLoss, decision.RouterZLoss);
            arguments.ExpertCapacity = 0;
            Launch(EmptyIds, arguments);
        }
    }

    /// <summary>The utilization coefficient of variation (one launch, one small copy).</summary>
    public float UtilizationCv() => Query(0).CoefficientOfVariation;

    /// <summary>The last most utilized expert and its utilization, or null before the first record.</summary>
    public (int Index, float Utilization)? MostUtilizedExpert()
    {
        var result = Query(0);
        return _experts == 0 ? null : (result.MostUtilized, result.MostUtilization);
    }

    /// <summary>The first least utilized expert and its utilization, or null before the first record.</summary>
    public (int Index, float Utilization)? LeastUtilizedExpert()
    {
        var result = Query(0);
        return _experts == 0 ? null : (result.LeastUtilized, result.LeastUtilization);
    }

    /// <summary>The least-squares slope of the last <paramref name="window"/> load variances.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="window"/> is negative.</exception>
    public float RecentLoadVarianceTrend(int window)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(window);
        return Query(window).Trend;
    }

    /// <summary>One wait for the queued records and one copy of each state array, as a managed <see cref="RoutingStats"/>.</summary>
    public RoutingStats Snapshot() => new(new ManagedRoutingEngine(_options, ReadState()));

    /// <summary>Clears the state on the device (enqueued; no wait).</summary>
    public void Reset()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            ClearDevice();
            _pending = NoRecord;
            _experts = 0;
        }
    }

    /// <summary>Waits for the enqueued work and frees the device memory (and the stream, when it made it).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            Stream.Synchronize();
            FreeDeviceMemory();
        }
    }

    /// <summary>Frees the buffers allocated so far and the stream, when this engine made it.</summary>
    private void FreeDeviceMemory()
    {
        foreach (var buffer in new MemoryBuffer?[] { _state, _batchHistogram, _batchInvalid, _batchPaddedTokens, _utilizationSums, _tokenCounts, _utilization, _decayedUtilization, _varianceHistory, _queryResult, _hostIds })
        {
            buffer?.Dispose();
        }

        if (_ownsStream)
        {
            Stream.Dispose();
        }
    }

    internal RoutingStateBlock ReadBlock()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            Span<RoutingStateBlock> block = stackalloc RoutingStateBlock[1];
            _state.View.CopyToCPU(Stream, block);
            return block[0];
        }
    }

    internal float[] ReadUtilization(bool decayed)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            if (decayed && _options.UtilizationDecay is null)
            {
                return [];
            }

            var values = new float[_experts];
            (decayed ? _decayedUtilization : _utilization).View.SubView(0, _experts).CopyToCPU(Stream, values.AsSpan());
            return values;
        }
    }

    internal ulong[] ReadTokenCounts()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            var values = new ulong[_experts];
            _tokenCounts.View.SubView(0, _experts).CopyToCPU(Stream, values.AsSpan());
            return values;
        }
    }

    /// <summary>The state block and the variance ring; not the per-expert arrays.</summary>
    internal float[] ReadVarianceHistory()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            Span<RoutingStateBlock> block = stackalloc RoutingStateBlock[1];
            var ring = new float[RoutingRecordKernel.VarianceWindow];
            _state.View.CopyToCPU(Stream, block);
            _varianceHistory.View.CopyToCPU(Stream, ring.AsSpan());
            return Unroll(ring, block[0]);
        }
    }

    /// <summary>The query's result: one launch, one 36-byte copy.</summary>
    internal UtilizationQueryResult Query(int window)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            return LaunchQuery(window);
        }
    }

    /// <summary>The query's result and the state block (for the summary), in one call.</summary>
    internal UtilizationQueryResult Query(int window, out RoutingStateBlock block)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            var result = LaunchQuery(window);
            Span<RoutingStateBlock> blocks = stackalloc RoutingStateBlock[1];
            _state.View.CopyToCPU(Stream, blocks);
            block = blocks[0];
            return result;
        }
    }

    /// <summary>Launches the query and copies its result back (ILGPU's host copy waits for the stream).</summary>
    private UtilizationQueryResult LaunchQuery(int window)
    {
        _query(Stream, _views, window, _queryResult.View);
        Span<UtilizationQueryResult> result = stackalloc UtilizationQueryResult[1];
        _queryResult.View.CopyToCPU(Stream, result);
        return result[0];
    }

    /// <summary>
    /// Every buffer copied back on the stream: the first copy waits for the queued records (ILGPU's
    /// host copies are synchronous), the others only for their own transfer.
    /// </summary>
    internal RoutingState ReadState()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            FoldPending();
            var experts = _experts;
            Span<RoutingStateBlock> blocks = stackalloc RoutingStateBlock[1];
            var utilization = new float[experts];
            var sums = new double[experts];
            var decayed = new float[_options.UtilizationDecay is null ? 0 : experts];
            var counts = new ulong[experts];
            var ring = new float[RoutingRecordKernel.VarianceWindow];
            _state.View.CopyToCPU(Stream, blocks);
            _utilization.View.SubView(0, experts).CopyToCPU(Stream, utilization.AsSpan());
            _utilizationSums.View.SubView(0, experts).CopyToCPU(Stream, sums.AsSpan());
            _decayedUtilization.View.SubView(0, decayed.Length).CopyToCPU(Stream, decayed.AsSpan());
            _tokenCounts.View.SubView(0, experts).CopyToCPU(Stream, counts.AsSpan());
            _varianceHistory.View.CopyToCPU(Stream, ring.AsSpan());

            var block = blocks[0];
            var history = Unroll(ring, block);
            return new RoutingState
            {
                TotalRoutings = block.TotalRoutings,
                TotalTokens = block.TotalTokens,
                TokensDropped = block.TokensDropped,
                InvalidExpertIds = block.InvalidExpertIds,
                RoutedSlots = block.RoutedSlots,
                SlotsDropped = block.SlotsDropped,
                LoadBalanceLossSum = block.LoadBalanceLossSum,
                RouterZLossSum = block.RouterZLossSum,
                AverageLoadBalanceLoss = block.AverageLoadBalanceLoss,
                AverageRouterZLoss = block.AverageRouterZLoss,
                RoutingEfficiency = block.RoutingEfficiency,
                ExpertUtilization = utilization,
                UtilizationSums = sums,
                DecayedExpertUtilization = decayed,
                ExpertTokenCounts = counts,
                LoadVarianceHistory = history,
                CapacityAverageUtilization = block.CapacityAverageUtilization,
                CapacityPeakUtilization = block.CapacityPeakUtilization,
                CapacityExceededCount = block.CapacityExceededCount,
                TotalCapacity = block.TotalCapacity,
                TotalUsed = block.TotalUsed,
            };
        }
    }

    /// <summary>The ring's entries, oldest first.</summary>
    private static float[] Unroll(float[] ring, RoutingStateBlock block)
    {
        var history = new float[block.VarianceCount];
        for (var i = 0; i < history.Length; i++)
        {
            history[i] = ring[(block.VarianceHead + i) % ring.Length];
        }

        return history;
    }

    private ArrayView<int> EmptyIds => _hostIds.View.SubView(0, 0);

    /// <summary>Arguments that name no record (slot −1).</summary>
    private static RecordArguments NoRecord => new() { Slot = -1 };

    /// <summary>The slot the next record is counted into: not the pending record's (both are clear when none is pending).</summary>
    private int NextSlot => (_pending.Slot + 1) % RoutingRecordKernel.BatchSlots;

    /// <summary>Counts this record into the free slot and folds the pending one, in one launch; this record is then pending.</summary>
    private void Launch(ArrayView<int> ids, RecordArguments arguments)
    {
        arguments.Slot = NextSlot;
        _pending = _record(Stream, ids, _views, arguments, _pending);
        _experts = arguments.Experts;
    }

    /// <summary>Folds the pending record, if any, so that the state on the device is complete (enqueued; no wait).</summary>
    private void FoldPending()
    {
        if (_pending.Slot >= 0)
        {
            _record(Stream, EmptyIds, _views, NoRecord, _pending);
            _pending = NoRecord;
        }
    }

    private RecordArguments Arguments(int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => new()
    {
        Experts = experts,
        Tokens = tokens,
        TopK = topK,
        TokensDropped = tokensDropped,
        ExpertCapacity = _options.ExpertCapacity ?? 0,
        SlotsPerExpert = _options.SlotsPerExpert,
        LoadBalanceLoss = loadBalanceLoss,
        RouterZLoss = routerZLoss,
        UtilizationDecay = _options.UtilizationDecay ?? -1f,
    };

    private static void CheckExperts(int experts)
    {
        if (experts > RoutingStatsOptions.MaxDeviceExperts)
        {
            throw new ArgumentOutOfRangeException(nameof(experts), experts, $"The device engine holds at most {RoutingStatsOptions.MaxDeviceExperts} experts.");
        }
    }

    private void ClearDevice()
    {
        _state.View.MemSetToZero(Stream);
        _batchHistogram.View.MemSetToZero(Stream);
        _batchInvalid.View.MemSetToZero(Stream);
        _batchPaddedTokens.View.MemSetToZero(Stream);
        _utilizationSums.View.MemSetToZero(Stream);
        _tokenCounts.View.MemSetToZero(Stream);
        _utilization.View.MemSetToZero(Stream);
        _decayedUtilization.View.MemSetToZero(Stream);
        _varianceHistory.View.MemSetToZero(Stream);
    }

    private MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length)
        where T : unmanaged => DeviceMemory.Allocate<T>(Accelerator, length, "the routing state");
}
