using System.Diagnostics;
using System.Numerics;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Collections;
using static System.FormattableString;

namespace MoeGpuStats.Engines;

/// <summary>
/// The seed's statistics in managed memory, with the seed's arithmetic and without its O(n)
/// window moves: a record costs O(E) and allocates nothing unless the expert count changes or a record from a
/// device view is the longest yet (its ids are copied into a host buffer that grows to the longest).
/// </summary>
internal sealed class ManagedRoutingEngine : RoutingStatsEngine
{
    /// <summary>How many per-batch load variances are kept, as in the seed.</summary>
    public const int HistoryWindow = Kernels.RoutingStateLayout.VarianceWindow;

    // Records, resets and copies are serialized, so that a metrics collector's snapshot on another
    // thread sees whole batches; the seed's own API is single-threaded and pays an uncontended lock.
    private readonly Lock _lock;
    private readonly LoadVarianceWindow _varianceHistory;
    private readonly CapacityStats _capacity;
    private float[] _utilization = [];
    private double[] _utilizationSums = [];

    // The means lag the sums after a record and are divided out on the first read: a record then
    // costs no division per expert. Each mean is sums[e] / batches whenever it is computed, so a
    // late mean is the mean a record would have written.
    private bool _utilizationStale;
    private UtilizationList? _utilizationList;
    private double _loadBalanceLossSum;
    private double _routerZLossSum;
    // The decayed averages are kept in f64 (RoutingStateViews.DecayedUtilization says why) and shown rounded to f32.
    private double[] _decayed = [];
    private float[] _decayedUtilization = [];
    private ulong[] _tokenCounts = [];
    private int[] _histogram = [];
    private int[] _hostIds = [];
    private RoutingTotals _totals;

    // At least every count the state holds (its totals and each expert's): while a record keeps it within MaxCount, no
    // count can pass 2^63 − 1, so only a state near it (read from a file of long runs, merged) pays the exact check.
    private ulong _countBound;

    /// <param name="options">The statistics' options.</param>
    /// <param name="state">The state to start from, validated by the caller; null for none.</param>
    /// <param name="gate">
    /// The lock that serializes this engine's records, resets and copies; null for its own. A model's
    /// layers share the model's: its step takes that lock once and records every layer under it
    /// (<see cref="RecordAndCount"/>).
    /// </param>
    /// <param name="keptBatches">
    /// Where a model keeps this layer's batch histograms for at least <see cref="HistoryWindow"/> batches (its
    /// window of expert load), written under <paramref name="gate"/>: the variances are computed from there and the
    /// engine keeps no copies. Null for copies of its own.
    /// </param>
    /// <param name="maxDeferredCounts">The most counts and ids its copies may take (<see cref="LoadVarianceWindow"/>): a model's layers share one budget.</param>
    public ManagedRoutingEngine(
        RoutingStatsOptions options, RoutingState? state = null, Lock? gate = null, IRecentBatchCounts? keptBatches = null, int maxDeferredCounts = LoadVarianceWindow.MaxDeferredCounts)
        : base(options)
    {
        _lock = gate ?? new Lock();
        _varianceHistory = new LoadVarianceWindow(HistoryWindow, _lock, keptBatches, maxDeferredCounts);
        _capacity = new CapacityStats(options.SlotsPerExpert);
        if (state is not null)
        {
            Import(state);
        }
    }

    public override string Name => "managed";

    public override int ExpertCount => _utilization.Length;

    public override RoutingTotals Totals
    {
        get
        {
            lock (_lock)
            {
                return _totals;
            }
        }
    }

    public override CapacityStats Capacity
    {
        get
        {
            lock (_lock)
            {
                return _capacity.Copy();
            }
        }
    }

    public override IReadOnlyList<float> ExpertUtilization
    {
        get
        {
            var means = Utilization;
            var list = _utilizationList;
            return list is not null && list.Means == means ? list : _utilizationList = new UtilizationList(this, means);
        }
    }

    public override IReadOnlyList<float> DecayedExpertUtilization => _decayedUtilization;

    public override IReadOnlyList<ulong> ExpertTokenCounts => _tokenCounts;

    public override IReadOnlyList<float> LoadVarianceHistory => _varianceHistory;

    public override void Record(RoutingDecision decision, int experts)
    {
        lock (_lock)
        {
            var counts = HistogramBuffer(experts);
            RoutingDecisionValidator.ReadCounts(decision.ExpertCapacities, counts, "routingDecision");
            Fold(counts, [], decision.TotalTokens, topK: 0, decision.TokensDropped, decision.LoadBalanceLoss, decision.RouterZLoss, invalidIds: 0);
        }
    }

    public override void Record(ArrayView<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss)
    {
        lock (_lock)
        {
            var experts = RecordChecks.ResolveExperts(Options, ExpertCount);
            var length = tokens * topK;
            if (_hostIds.Length < length)
            {
                _hostIds = new int[length];
            }

            var host = _hostIds.AsSpan(0, length);
            if (length > 0)
            {
                // An empty batch may come as a default view, which has no accelerator to copy from.
                ids.SubView(0, length).CopyToCPU(host);
            }

            RecordLocked(host, experts, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);
        }
    }

    public override void Record(ReadOnlySpan<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss)
    {
        lock (_lock)
        {
            RecordLocked(ids, RecordChecks.ResolveExperts(Options, ExpertCount), tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);
        }
    }

    /// <summary>
    /// Records a batch of top-k ids as <see cref="Record(ReadOnlySpan{int}, int, int, int, float, float)"/> and returns its
    /// histogram, valid until the next record. The caller holds the gate the engine was made with: a model's step takes
    /// its lock once for all its layers, where re-entering it per layer (a failed compare-and-swap and the lock's slow
    /// path) would cost as many lock operations as L single-layer records pay.
    /// </summary>
    internal ReadOnlySpan<int> RecordAndCount(ReadOnlySpan<int> ids, int experts, int tokens, int topK, float loadBalanceLoss, float routerZLoss)
    {
        Debug.Assert(_lock.IsHeldByCurrentThread, "A model's step records its layers under the gate they share.");
        RecordLocked(ids, experts, tokens, topK, tokensDropped: 0, loadBalanceLoss, routerZLoss);
        return _histogram.AsSpan(0, experts);
    }

    private void RecordLocked(ReadOnlySpan<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss)
    {
        var histogram = HistogramBuffer(experts);
        histogram.Clear();
        var batch = ids[..(tokens * topK)];
        var outside = ExpertHistogram.Accumulate(batch, histogram);

        // Only a batch with ids outside the experts can hold padding, as on the device.
        var (emptySlots, paddedTokens) = outside == 0 ? (0UL, 0) : ExpertHistogram.Padding(batch, topK);
        // The ids are read twice: a caller's buffer that changes in between must not wrap the invalid count around.
        Fold(histogram, batch, tokens - paddedTokens, topK, tokensDropped, loadBalanceLoss, routerZLoss, outside - Math.Min(emptySlots, outside));
    }

    public override UtilizationQuery QueryUtilization()
    {
        var values = Utilization.AsSpan();
        if (values.IsEmpty)
        {
            return default;
        }

        var most = RoutingMath.IndexOfLastMax(values);
        var least = RoutingMath.IndexOfFirstMin(values);
        return new UtilizationQuery(
            values.Length,
            RoutingMath.Mean(values),
            RoutingMath.Min(values),
            RoutingMath.Max(values),
            RoutingMath.CoefficientOfVariation(values),
            most,
            values[most],
            least,
            values[least]);
    }

    public override float UtilizationCv() => RoutingMath.CoefficientOfVariation(Utilization);

    public override float VarianceTrend(int window)
    {
        if (_varianceHistory.Count < 2)
        {
            return 0f;
        }

        _varianceHistory.GetTail(window, out var first, out var second);
        return RoutingMath.Trend(first, second);
    }

    public override void Reset()
    {
        lock (_lock)
        {
            ResetLocked();
        }
    }

    private void ResetLocked()
    {
        _totals = default;
        _loadBalanceLossSum = 0;
        _routerZLossSum = 0;
        _utilization = [];
        _utilizationSums = [];
        _utilizationStale = false;
        _decayed = [];
        _decayedUtilization = [];
        _tokenCounts = [];
        _varianceHistory.Clear();
        _capacity.Restore(0f, 0f, 0, 0, 0);
        _countBound = 0;
    }

    public override ManagedRoutingEngine Snapshot() => new(Options, Export());

    public RoutingState Export()
    {
        lock (_lock)
        {
            return ExportLocked();
        }
    }

    private RoutingState ExportLocked() => new()
    {
        TotalRoutings = _totals.TotalRoutings,
        TotalTokens = _totals.TotalTokens,
        TokensDropped = _totals.TokensDropped,
        InvalidExpertIds = _totals.InvalidExpertIds,
        RoutedSlots = _totals.RoutedSlots,
        SlotsDropped = _totals.SlotsDropped,
        LoadBalanceLossSum = _loadBalanceLossSum,
        RouterZLossSum = _routerZLossSum,
        AverageLoadBalanceLoss = _totals.AverageLoadBalanceLoss,
        AverageRouterZLoss = _totals.AverageRouterZLoss,
        RoutingEfficiency = _totals.RoutingEfficiency,
        ExpertUtilization = (float[])Utilization.Clone(),
        UtilizationSums = (double[])_utilizationSums.Clone(),
        DecayedExpertUtilization = (double[])_decayed.Clone(),
        ExpertTokenCounts = (ulong[])_tokenCounts.Clone(),
        LoadVarianceHistory = _varianceHistory.ToArray(),
        CapacityAverageUtilization = _capacity.AverageUtilization,
        CapacityPeakUtilization = _capacity.PeakUtilization,
        CapacityExceededCount = _capacity.CapacityExceededCount,
        TotalCapacity = _capacity.TotalCapacity,
        TotalUsed = _capacity.TotalUsed,
    };

    private void Import(RoutingState state)
    {
        _totals = new RoutingTotals(
            state.TotalRoutings,
            state.TotalTokens,
            state.TokensDropped,
            state.InvalidExpertIds,
            state.RoutedSlots,
            state.SlotsDropped,
            state.AverageLoadBalanceLoss,
            state.AverageRouterZLoss,
            state.RoutingEfficiency);
        _utilization = (float[])state.ExpertUtilization.Clone();
        _utilizationStale = false;
        // A file keeps only the means: their sums are taken as exact, mean × batches.
        double routings = state.TotalRoutings;
        _utilizationSums = state.UtilizationSums is { } sums && sums.Length == _utilization.Length
            ? (double[])sums.Clone()
            : Array.ConvertAll(_utilization, mean => mean * routings);
        _loadBalanceLossSum = state.LoadBalanceLossSum ?? state.AverageLoadBalanceLoss * routings;
        _routerZLossSum = state.RouterZLossSum ?? state.AverageRouterZLoss * routings;
        _tokenCounts = (ulong[])state.ExpertTokenCounts.Clone();
        _countBound = Math.Max(
            Math.Max(state.TotalRoutings, state.TotalTokens),
            Math.Max(state.RoutedSlots + state.InvalidExpertIds, _tokenCounts.Length > 0 ? _tokenCounts.Max() : 0));
        _decayed = Options.UtilizationDecay is null ? []
            : state.DecayedExpertUtilization.Length == _utilization.Length ? (double[])state.DecayedExpertUtilization.Clone()
            : new double[_utilization.Length];
        _decayedUtilization = Array.ConvertAll(_decayed, value => (float)value);
        _varianceHistory.Clear();
        foreach (var variance in state.LoadVarianceHistory.AsSpan(Math.Max(0, state.LoadVarianceHistory.Length - HistoryWindow)))
        {
            _varianceHistory.AddComputed(variance);
        }

        _capacity.Restore(
            state.CapacityAverageUtilization,
            state.CapacityPeakUtilization,
            state.CapacityExceededCount,
            state.TotalCapacity,
            state.TotalUsed);
    }

    /// <summary>
    /// The seed's <c>record_routing</c> on a validated batch histogram of <paramref name="tokens"/>
    /// tokens (padded tokens excluded). Dropped and kept are counted as the device fold counts them
    /// (RoutingRecordKernel's UpdateBlock): token-expert slots for top-k ids (<paramref name="topK"/>
    /// ≥ 1), where a capacity drops slots; tokens for a decision (<paramref name="topK"/> 0), as the seed.
    /// <paramref name="ids"/> are the ids <paramref name="counts"/> counts (a decode batch's variance keeps them, not a
    /// copy of the counts), empty for a decision.
    /// The running means are f64 sums over the batches (<see cref="RoutingStatsEngine"/> remarks).
    /// </summary>
    private void Fold(ReadOnlySpan<int> counts, ReadOnlySpan<int> ids, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss, ulong invalidIds)
    {
        // A batch of ids adds at most its ids (tokens × k) to any count, a decision at most its tokens or its largest count.
        var added = topK > 0 ? (ulong)ids.Length : (ulong)Math.Max(tokens, counts.IsEmpty ? 0 : MaxOf(counts));
        var countBound = FitsUnchecked(added) ? _countBound + Math.Max(added, 1) : CheckedCountBound(counts, tokens, topK, invalidIds, layer: -1);

        // Everything that allocates runs before the first change, so that a record that fails
        // (out of memory on a huge expert count) leaves the statistics as they were.
        var experts = counts.Length;
        ReserveFold(experts);
        var totals = _totals;
        var routings = totals.TotalRoutings + 1;
        var batchSum = UpdateExperts(counts, tokens);
        _utilizationStale = true;

        var fromIds = topK > 0;
        var capacity = fromIds ? Options.ExpertCapacity : null;
        var overflow = capacity is { } slots ? ExpertHistogram.DroppedSlots(counts, slots) : 0L;
        var routed = fromIds ? batchSum : tokens;
        var droppedSlots = capacity is not null ? overflow : fromIds ? Math.Min((long)tokensDropped * topK, batchSum) : tokensDropped;
        var routedSlots = totals.RoutedSlots + (ulong)routed;
        var slotsDropped = totals.SlotsDropped + (ulong)droppedSlots;
        _loadBalanceLossSum += loadBalanceLoss;
        _routerZLossSum += routerZLoss;
        _totals = new RoutingTotals(
            routings,
            totals.TotalTokens + (ulong)tokens,
            totals.TokensDropped + (capacity is not null ? 0UL : (ulong)Math.Min(tokensDropped, tokens)),
            totals.InvalidExpertIds + invalidIds,
            routedSlots,
            slotsDropped,
            Kernels.LossMean.Of(_loadBalanceLossSum, routings),
            Kernels.LossMean.Of(_routerZLossSum, routings),
            routedSlots > 0 ? (float)(routedSlots - slotsDropped) / routedSlots * 100.0f : totals.RoutingEfficiency);

        _varianceHistory.Add(counts, batchSum, ids);
        // As the device's fold: a record of ids uses the slots it keeps, a decision's counts are the seed's used slots.
        _capacity.Apply(fromIds ? batchSum - droppedSlots : batchSum, experts, droppedSlots > 0);
        _countBound = countBound;
    }

    /// <summary>
    /// Whether a batch that adds at most <paramref name="added"/> to any count (and one batch) keeps
    /// <see cref="_countBound"/> within 2^63 − 1, so that no count needs checking: the one comparison a record pays.
    /// </summary>
    internal bool FitsUnchecked(ulong added) => _countBound + Math.Max(added, 1) <= Kernels.RoutingStateLayout.MaxCount;

    /// <summary>
    /// Checks each count a batch adds to exactly, where the bound would pass 2^63 − 1, and returns the bound after it,
    /// 2^63 − 1. <paramref name="layer"/> is the model's layer these statistics are, for the message (−1 for statistics
    /// of their own).
    /// </summary>
    /// <exception cref="InvalidOperationException">The batch would take a count past 2^63 − 1, the most a snapshot holds; nothing changed.</exception>
    private ulong CheckedCountBound(ReadOnlySpan<int> counts, int tokens, int topK, ulong invalidIds, int layer)
    {
        const ulong most = Kernels.RoutingStateLayout.MaxCount;
        var sameExperts = _tokenCounts.Length == counts.Length;
        ulong routed = 0;
        for (var e = 0; e < counts.Length; e++)
        {
            routed += (ulong)counts[e];
            if (sameExperts && (ulong)counts[e] > most - _tokenCounts[e])
            {
                throw PastMaxCount(layer, Serialization.RoutingStatsJson.Entry("expert_token_counts", e), _tokenCounts[e], (ulong)counts[e]);
            }
        }

        // Dropped tokens and slots are at most the tokens and slots routed, which are checked.
        routed = topK > 0 ? routed : (ulong)tokens;
        ReadOnlySpan<(string Field, ulong Total, ulong Added)> totals =
        [
            ("total_routings", _totals.TotalRoutings, 1),
            ("total_tokens", _totals.TotalTokens, (ulong)tokens),
            ("routed_slots", _totals.RoutedSlots, routed),
            ("invalid_expert_ids", _totals.InvalidExpertIds, invalidIds),
        ];
        foreach (var (field, total, add) in totals)
        {
            if (add > most - total)
            {
                throw PastMaxCount(layer, field, total, add);
            }
        }

        return most;
    }

    private static int MaxOf(ReadOnlySpan<int> counts)
    {
        var max = 0;
        foreach (var count in counts)
        {
            max = Math.Max(max, count);
        }

        return max;
    }

    private static InvalidOperationException PastMaxCount(int layer, string field, ulong total, ulong added) =>
        new(layer < 0
            ? Invariant($"This batch would take {field} past {Kernels.RoutingStateLayout.MaxCount:N0} ({total} + {added}), the most a snapshot holds; the statistics are unchanged: record into new statistics.")
            : Invariant($"This step would take layers[{layer}].{field} past {Kernels.RoutingStateLayout.MaxCount:N0} ({total} + {added}), the most a snapshot holds; the model is unchanged: record into a new model."));

    /// <summary>
    /// Throws where recording a step's <paramref name="ids"/> (this layer's <c>tokens × topK</c>), which
    /// <see cref="FitsUnchecked"/> does not clear, would take one of this layer's counts past 2^63 − 1, as the record
    /// itself would: a model checks every layer before it records any, so that a refused step leaves none recorded.
    /// Counts the ids apart (allocating), which only a state near the limit pays.
    /// </summary>
    /// <exception cref="InvalidOperationException">It would; the message names the layer and the count.</exception>
    internal void CheckStep(ReadOnlySpan<int> ids, int experts, int tokens, int topK, int layer)
    {
        var counts = new int[experts];
        var outside = ExpertHistogram.Accumulate(ids, counts);
        var (emptySlots, paddedTokens) = outside == 0 ? (0UL, 0) : ExpertHistogram.Padding(ids, topK);
        CheckedCountBound(counts, tokens - paddedTokens, topK, outside - Math.Min(emptySlots, outside), layer);
    }

    /// <summary>
    /// Per-expert updates; returns the batch's slot total. The utilization is the mean of the seed's
    /// f32 shares (<c>count / tokens</c>), summed in f64 here and divided by the batches on the next
    /// read (<see cref="Utilization"/>). Element-wise IEEE operations, so the vector path gives the
    /// scalar path's values bit for bit, and both the device fold's.
    /// </summary>
    /// <remarks>
    /// The vector loops load and store through references (<see cref="Vector.LoadUnsafe{T}(ref readonly T, nuint)"/>,
    /// which the JIT always expands) into spans whose lengths are fixed above, not through span constructors and
    /// <c>CopyTo</c>: those are calls the JIT inlines only while its inlining budget lasts, and when dynamic PGO
    /// inlined a whole model step into its hot caller they stayed calls and the step ran 1.5 to 3.5 times the
    /// L single-layer records (docs/performance.md). <see cref="ExpertLoadWindow"/>'s slide and <see cref="DivideMeans"/> do the same.
    /// </remarks>
    private long UpdateExperts(ReadOnlySpan<int> counts, int tokens)
    {
        var sums = _utilizationSums.AsSpan(0, counts.Length);
        var tokenCounts = MemoryMarshal.Cast<ulong, long>(_tokenCounts.AsSpan(0, counts.Length));
        float batchTokens = tokens;
        var i = 0;
        long sum = 0;
        if (Vector.IsHardwareAccelerated && counts.Length >= Vector<int>.Count)
        {
            ref var count0 = ref MemoryMarshal.GetReference(counts);
            ref var sum0 = ref MemoryMarshal.GetReference(sums);
            ref var tokenCount0 = ref MemoryMarshal.GetReference(tokenCounts);
            var vectorTokens = new Vector<float>(batchTokens);
            var vectorSum = Vector<long>.Zero;
            var half = (nuint)Vector<long>.Count;
            for (; i <= counts.Length - Vector<int>.Count; i += Vector<int>.Count)
            {
                var at = (nuint)i;
                var count = Vector.LoadUnsafe(ref count0, at);
                var shares = tokens > 0 ? Vector.ConvertToSingle(count) / vectorTokens : Vector<float>.Zero;
                (Vector.LoadUnsafe(ref sum0, at) + Vector.WidenLower(shares)).StoreUnsafe(ref sum0, at);
                (Vector.LoadUnsafe(ref sum0, at + half) + Vector.WidenUpper(shares)).StoreUnsafe(ref sum0, at + half);
                var low = Vector.WidenLower(count);
                var high = Vector.WidenUpper(count);
                (Vector.LoadUnsafe(ref tokenCount0, at) + low).StoreUnsafe(ref tokenCount0, at);
                (Vector.LoadUnsafe(ref tokenCount0, at + half) + high).StoreUnsafe(ref tokenCount0, at + half);
                vectorSum += low + high;
            }

            sum = Vector.Sum(vectorSum);
        }

        for (; i < counts.Length; i++)
        {
            var count = counts[i];
            var share = tokens > 0 ? count / batchTokens : 0f;
            sums[i] += share;
            tokenCounts[i] += count;
            sum += count;
        }

        if (Options.UtilizationDecay is { } decay)
        {
            var decayed = _decayed.AsSpan(0, counts.Length);
            var shown = _decayedUtilization.AsSpan(0, counts.Length);
            var fresh = 1.0 - decay;
            for (i = 0; i < counts.Length; i++)
            {
                var share = tokens > 0 ? counts[i] / batchTokens : 0f;
                decayed[i] = (decay * decayed[i]) + (fresh * share);
                shown[i] = (float)decayed[i];
            }
        }

        return sum;
    }

    /// <summary>
    /// Each expert's mean share, <c>sums[e] / batches</c> in f64 rounded to f32, divided out first if a
    /// record came since; the division under the lock, so that a record on another thread cannot come
    /// between it and the flag that says it is done. A read with nothing to divide takes no lock: the
    /// held list reads this once per element.
    /// </summary>
    private float[] Utilization
    {
        get
        {
            if (Volatile.Read(ref _utilizationStale))
            {
                lock (_lock)
                {
                    if (_utilizationStale)
                    {
                        DivideMeans(_utilizationSums.AsSpan(0, _utilization.Length), _totals.TotalRoutings, _utilization);
                        _utilizationStale = false;
                    }
                }
            }

            return _utilization;
        }
    }

    /// <summary>
    /// <see cref="ExpertUtilization"/>: the means of one expert count, divided out at each read of an
    /// element if a record came since, so that a caller holding the list sees later records, as the token
    /// counts' list shows them, until the expert count changes or a reset.
    /// </summary>
    private sealed class UtilizationList(ManagedRoutingEngine engine, float[] means) : IReadOnlyList<float>
    {
        public float[] Means => means;

        public int Count => means.Length;

        public float this[int index]
        {
            get
            {
                OutOfRange.ThrowIfNotIndex(index, means.Length, "expert");
                _ = engine.Utilization;
                return means[index];
            }
        }

        public IEnumerator<float> GetEnumerator()
        {
            for (var i = 0; i < means.Length; i++)
            {
                yield return this[i];
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    private static void DivideMeans(ReadOnlySpan<double> sums, double batches, Span<float> means)
    {
        means = means[..sums.Length];
        var i = 0;
        if (Vector.IsHardwareAccelerated && sums.Length >= Vector<float>.Count)
        {
            ref var sum0 = ref MemoryMarshal.GetReference(sums);
            ref var mean0 = ref MemoryMarshal.GetReference(means);
            var vectorBatches = new Vector<double>(batches);
            var half = (nuint)Vector<double>.Count;
            for (; i <= sums.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var at = (nuint)i;
                Vector.Narrow(Vector.LoadUnsafe(ref sum0, at) / vectorBatches, Vector.LoadUnsafe(ref sum0, at + half) / vectorBatches).StoreUnsafe(ref mean0, at);
            }
        }

        for (; i < sums.Length; i++)
        {
            means[i] = (float)(sums[i] / batches);
        }
    }

    /// <summary>
    /// Allocates what a record of ids over <paramref name="experts"/> experts needs and no reading shows (the
    /// histogram, the variance history's room), and returns the per-expert arrays it would start, not yet in use
    /// (null where the layer has them): a model allocates for every layer before any layer takes its arrays
    /// (<see cref="Adopt"/>), so a step that runs out of memory leaves every layer as it was, and no layer's variance
    /// history is keyed to a step the window did not keep.
    /// </summary>
    internal ExpertArrays? ReserveRecord(int experts)
    {
        lock (_lock)
        {
            HistogramBuffer(experts);
            _varianceHistory.Reserve(experts);
            return NewExpertArrays(experts);
        }
    }

    /// <summary>Starts the per-expert arrays <see cref="ReserveRecord"/> allocated (zeros: no batch yet).</summary>
    internal void Adopt(ExpertArrays arrays)
    {
        lock (_lock)
        {
            (_utilization, _utilizationSums, _tokenCounts, _decayed, _decayedUtilization) = arrays;
        }
    }

    /// <summary>Allocates the per-expert arrays and the variance history's room for a batch of <paramref name="experts"/>.</summary>
    private void ReserveFold(int experts)
    {
        _varianceHistory.Reserve(experts);
        if (NewExpertArrays(experts) is { } arrays)
        {
            Adopt(arrays);
        }
    }

    /// <summary>Zeroed per-expert arrays for <paramref name="experts"/>, or null where the engine's are that long.</summary>
    private ExpertArrays? NewExpertArrays(int experts) => _utilization.Length == experts
        ? null
        : new(new float[experts], new double[experts], new ulong[experts], Options.UtilizationDecay is null ? [] : new double[experts], Options.UtilizationDecay is null ? [] : new float[experts]);

    /// <summary>A layer's per-expert arrays: utilization means and their sums, token counts, decayed utilization in f64 and as shown (empty without a decay).</summary>
    internal sealed record ExpertArrays(float[] Utilization, double[] UtilizationSums, ulong[] TokenCounts, double[] Decayed, float[] DecayedUtilization);

    private Span<int> HistogramBuffer(int experts)
    {
        if (_histogram.Length < experts)
        {
            _histogram = new int[experts];
        }

        return _histogram.AsSpan(0, experts);
    }
}
