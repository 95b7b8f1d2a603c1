using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Collections;

namespace MoeGpuStats.Engines;

/// <summary>
/// The seed's statistics in managed memory, with the seed's arithmetic and without its O(n)
/// window moves: a record costs O(E) and allocates nothing unless the expert count changes.
/// </summary>
internal sealed class ManagedRoutingEngine : RoutingStatsEngine
{
    /// <summary>How many per-batch load variances are kept, as in the seed.</summary>
    public const int HistoryWindow = 1000;

    private readonly LoadVarianceWindow _varianceHistory = new(HistoryWindow);
    private readonly CapacityStats _capacity;
    private float[] _utilization = [];
    private float[] _decayedUtilization = [];
    private ulong[] _tokenCounts = [];
    private int[] _histogram = [];
    private int[] _hostIds = [];
    private RoutingTotals _totals;

    public ManagedRoutingEngine(RoutingStatsOptions options, RoutingState? state = null)
        : base(options)
    {
        _capacity = new CapacityStats(options.SlotsPerExpert);
        if (state is not null)
        {
            Import(state);
        }
    }

    public override string Name => "managed";

    public override int ExpertCount => _utilization.Length;

    public override RoutingTotals Totals => _totals;

    public override CapacityStats Capacity => _capacity;

    public override IReadOnlyList<float> ExpertUtilization => _utilization;

    public override IReadOnlyList<float> DecayedExpertUtilization => _decayedUtilization;

    public override IReadOnlyList<ulong> ExpertTokenCounts => _tokenCounts;

    public override IReadOnlyList<float> LoadVarianceHistory => _varianceHistory;

    public override void Record(RoutingDecision decision)
    {
        var counts = RoutingDecisionValidator.TryGetSpan(decision.ExpertCapacities, out var span) ? span : CopyToHistogram(decision.ExpertCapacities);
        Fold(counts, decision.TotalTokens, decision.TokensDropped, decision.LoadBalanceLoss, decision.RouterZLoss, invalidIds: 0);
    }

    public override void Record(ArrayView<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss)
    {
        var length = checked(tokens * topK);
        if (_hostIds.Length < length)
        {
            _hostIds = new int[length];
        }

        var host = _hostIds.AsSpan(0, length);
        ids.SubView(0, length).CopyToCPU(host);
        Record(host, experts, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);
    }

    public override void Record(ReadOnlySpan<int> ids, int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss)
    {
        var histogram = HistogramBuffer(experts);
        histogram.Clear();
        var invalid = ExpertHistogram.Accumulate(ids[..checked(tokens * topK)], histogram);
        if (Options.ExpertCapacity is { } capacity)
        {
            tokensDropped = ExpertHistogram.DroppedSlots(histogram, capacity, tokens);
        }

        Fold(histogram, tokens, tokensDropped, loadBalanceLoss, routerZLoss, invalid);
    }

    public override UtilizationQuery QueryUtilization()
    {
        var values = _utilization.AsSpan();
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

    public override float UtilizationCv() => RoutingMath.CoefficientOfVariation(_utilization);

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
        _totals = default;
        _utilization = [];
        _decayedUtilization = [];
        _tokenCounts = [];
        _varianceHistory.Clear();
        _capacity.Restore(0f, 0f, 0, 0, 0);
    }

    public override ManagedRoutingEngine Snapshot() => new(Options, Export());

    public RoutingState Export() => new()
    {
        TotalRoutings = _totals.TotalRoutings,
        TotalTokens = _totals.TotalTokens,
        TokensDropped = _totals.TokensDropped,
        InvalidExpertIds = _totals.InvalidExpertIds,
        AverageLoadBalanceLoss = _totals.AverageLoadBalanceLoss,
        AverageRouterZLoss = _totals.AverageRouterZLoss,
        RoutingEfficiency = _totals.RoutingEfficiency,
        ExpertUtilization = (float[])_utilization.Clone(),
        DecayedExpertUtilization = (float[])_decayedUtilization.Clone(),
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
            state.AverageLoadBalanceLoss,
            state.AverageRouterZLoss,
            state.RoutingEfficiency);
        _utilization = (float[])state.ExpertUtilization.Clone();
        _tokenCounts = (ulong[])state.ExpertTokenCounts.Clone();
        _decayedUtilization = Options.UtilizationDecay is null ? []
            : state.DecayedExpertUtilization.Length == _utilization.Length ? (float[])state.DecayedExpertUtilization.Clone()
            : new float[_utilization.Length];
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

    /// <summary>The seed's <c>record_routing</c> on a validated batch histogram.</summary>
    private void Fold(ReadOnlySpan<int> counts, int tokens, int tokensDropped, float loadBalanceLoss, float routerZLoss, ulong invalidIds)
    {
        var totals = _totals;
        var routings = totals.TotalRoutings + 1;
        var totalTokens = totals.TotalTokens + (ulong)tokens;
        var dropped = totals.TokensDropped + (ulong)tokensDropped;
        var alpha = 1.0f / routings;
        var keep = 1.0f - alpha;
        var efficiency = totalTokens > 0 ? (float)(totalTokens - dropped) / totalTokens * 100.0f : totals.RoutingEfficiency;
        _totals = new RoutingTotals(
            routings,
            totalTokens,
            dropped,
            totals.InvalidExpertIds + invalidIds,
            alpha * loadBalanceLoss + keep * totals.AverageLoadBalanceLoss,
            alpha * routerZLoss + keep * totals.AverageRouterZLoss,
            efficiency);

        if (_utilization.Length != counts.Length)
        {
            _utilization = new float[counts.Length];
            _tokenCounts = new ulong[counts.Length];
            _decayedUtilization = Options.UtilizationDecay is null ? [] : new float[counts.Length];
        }

        var sum = UpdateExperts(counts, tokens, alpha, keep);
        _varianceHistory.Add(counts, sum);
        _capacity.Apply(sum, counts.Length, tokensDropped > 0);
    }

    /// <summary>
    /// Per-expert updates; returns the batch's slot total. Element-wise IEEE operations, so the
    /// vector path gives the scalar path's floats bit for bit.
    /// </summary>
    private long UpdateExperts(ReadOnlySpan<int> counts, int tokens, float alpha, float keep)
    {
        var utilization = _utilization.AsSpan(0, counts.Length);
        var tokenCounts = MemoryMarshal.Cast<ulong, long>(_tokenCounts.AsSpan(0, counts.Length));
        float batchTokens = tokens;
        var i = 0;
        long sum = 0;
        if (Vector.IsHardwareAccelerated && counts.Length >= Vector<int>.Count)
        {
            var vectorAlpha = new Vector<float>(alpha);
            var vectorKeep = new Vector<float>(keep);
            var vectorTokens = new Vector<float>(batchTokens);
            var vectorSum = Vector<long>.Zero;
            var half = Vector<long>.Count;
            for (; i <= counts.Length - Vector<int>.Count; i += Vector<int>.Count)
            {
                var count = new Vector<int>(counts[i..]);
                var share = tokens > 0 ? Vector.ConvertToSingle(count) / vectorTokens : Vector<float>.Zero;
                (vectorAlpha * share + vectorKeep * new Vector<float>(utilization[i..])).CopyTo(utilization[i..]);
                Vector.Widen(count, out var low, out var high);
                (new Vector<long>(tokenCounts[i..]) + low).CopyTo(tokenCounts[i..]);
                (new Vector<long>(tokenCounts[(i + half)..]) + high).CopyTo(tokenCounts[(i + half)..]);
                vectorSum += low + high;
            }

            sum = Vector.Sum(vectorSum);
        }

        for (; i < counts.Length; i++)
        {
            var count = counts[i];
            var share = tokens > 0 ? count / batchTokens : 0f;
            utilization[i] = alpha * share + keep * utilization[i];
            tokenCounts[i] += count;
            sum += count;
        }

        if (Options.UtilizationDecay is { } decay)
        {
            var decayed = _decayedUtilization.AsSpan(0, counts.Length);
            var fresh = 1.0f - decay;
            for (i = 0; i < counts.Length; i++)
            {
                var share = tokens > 0 ? counts[i] / batchTokens : 0f;
                decayed[i] = decay * decayed[i] + fresh * share;
            }
        }

        return sum;
    }

    private Span<int> HistogramBuffer(int experts)
    {
        if (_histogram.Length < experts)
        {
            _histogram = new int[experts];
        }

        return _histogram.AsSpan(0, experts);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private ReadOnlySpan<int> CopyToHistogram(IReadOnlyList<int> counts)
    {
        var buffer = HistogramBuffer(counts.Count);
        for (var i = 0; i < buffer.Length; i++)
        {
            buffer[i] = counts[i];
        }

        return buffer;
    }
}
