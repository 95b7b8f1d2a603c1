using MoeGpuStats.Collections;
using static System.FormattableString;

namespace MoeGpuStats.Engines;

/// <summary>
/// Combines the states of several ranks or replicas that route to the same experts, one part at a time: a merge holds
/// its result and the part it adds, not every part (a job's hundreds of ranks' snapshots read one after another).
/// Each sum is taken in the order the parts are added, so adding them one at a time gives, to the bit, the merge of
/// the same parts given as one list.
/// </summary>
internal sealed class RoutingStatsMerge
{
    private readonly string _within;
    private readonly RoutingState _merged = new() { LoadBalanceLossSum = 0, RouterZLossSum = 0 };
    private readonly RingWindow<float> _history = new(ManagedRoutingEngine.HistoryWindow);
    private readonly RingWindow<double> _recentLatencies = new(LatencyStats.WindowSize);
    private readonly List<(double Total, double Min, double Max)> _latencies = [];
    private RoutingStatsOptions? _options;
    private (int Part, int Experts)? _counted;
    private (int Part, int Experts)? _configured;
    private double _capacityAverageSum;
    private ulong _measurements;
    private long _mergedParts;
    private int _parts;

    /// <param name="within">What the parts are within, prefixed to a refused count's name: <c>layers[3].</c> for a model's layer.</param>
    public RoutingStatsMerge(string within = "") => _within = within;

    /// <summary>Combines <paramref name="parts"/> (at least one).</summary>
    /// <exception cref="ArgumentException">The parts count different experts or have different capacities, or a sum passes what a snapshot holds.</exception>
    public static RoutingStats Merge(IReadOnlyList<RoutingStats> parts, string within = "")
    {
        var merge = new RoutingStatsMerge(within);
        foreach (var part in parts)
        {
            merge.Add(part);
        }

        return merge.Result();
    }

    /// <summary>Adds the next part, named <c>parts[i]</c> by its place in the order added.</summary>
    /// <exception cref="ArgumentException">The part does not merge with those before it, or a sum passes what a snapshot holds: give the merge up (it holds some of the part).</exception>
    public void Add(RoutingStats part) => Add(part.ExportState(), part.Options, part.RoutingLatencyStats.Copy(), part.MergedParts);

    /// <summary>Adds a model's layer, as its model exported it (a model's layer keeps no latencies).</summary>
    /// <exception cref="ArgumentException">A sum passes what a snapshot holds: give the merge up (it holds some of the part).</exception>
    public void Add(RoutingState state, RoutingStatsOptions options) => Add(state, options, latency: null, mergedParts: 1);

    private void Add(RoutingState state, RoutingStatsOptions partOptions, LatencyStats? latency, int mergedParts)
    {
        var index = _parts;

        // The experts the parts count must agree, and so must the experts their options fix; not the one
        // with the other, since options fix the experts of records of ids only and a decision of another
        // count may follow (an idle rank beside one that recorded such a decision merges).
        if (state.ExpertUtilization.Length is > 0 and var counted && _counted is var (first, experts) && counted != experts)
        {
            throw new ArgumentException(Invariant($"Only the same experts merge: parts[{first}] counts {experts} experts, parts[{index}] {counted}."), "parts");
        }

        if (partOptions.Experts is { } configured && _configured is var (a, fixedExperts) && configured != fixedExperts)
        {
            throw new ArgumentException(Invariant($"Only the same experts merge: parts[{a}] has Experts = {fixedExperts}, parts[{index}] {configured}."), "parts");
        }

        // A capacity derives drops and an unset one does not, even where its placeholder is the same number.
        if (_options is { } options && options.ExpertCapacity != partOptions.ExpertCapacity)
        {
            throw new ArgumentException(Invariant($"Only the same capacity merges: parts[0] has {Capacity(options)}, parts[{index}] {Capacity(partOptions)}."), "parts");
        }

        _options ??= partOptions;
        _counted ??= state.ExpertUtilization.Length > 0 ? (index, state.ExpertUtilization.Length) : null;
        _configured ??= partOptions.Experts is { } given ? (index, given) : null;
        var merged = _merged;
        merged.TotalRoutings = Add(_within, merged.TotalRoutings, state.TotalRoutings, "total_routings");
        merged.TotalTokens = Add(_within, merged.TotalTokens, state.TotalTokens, "total_tokens");
        merged.TokensDropped = Add(_within, merged.TokensDropped, state.TokensDropped, "tokens_dropped");
        merged.RoutedSlots = Add(_within, merged.RoutedSlots, state.RoutedSlots, "routed_slots");
        merged.SlotsDropped = Add(_within, merged.SlotsDropped, state.SlotsDropped, "slots_dropped");
        merged.InvalidExpertIds = Add(_within, merged.InvalidExpertIds, state.InvalidExpertIds, "invalid_expert_ids");
        merged.CapacityExceededCount = Add(_within, merged.CapacityExceededCount, state.CapacityExceededCount, "capacity_exceeded_count");
        merged.TotalCapacity = Kernels.StoppedCount.Add(merged.TotalCapacity, state.TotalCapacity);
        merged.TotalUsed = Kernels.StoppedCount.Add(merged.TotalUsed, state.TotalUsed);
        merged.CapacityPeakUtilization = Math.Max(merged.CapacityPeakUtilization, state.CapacityPeakUtilization);
        double weight = state.TotalRoutings;
        merged.LoadBalanceLossSum += state.LoadBalanceLossSum ?? weight * state.AverageLoadBalanceLoss;
        merged.RouterZLossSum += state.RouterZLossSum ?? weight * state.AverageRouterZLoss;
        _capacityAverageSum += weight * state.CapacityAverageUtilization;
        if (state.ExpertTokenCounts.Length > 0 && merged.ExpertTokenCounts.Length == 0)
        {
            // The first part that counts experts sizes the merge; parts before it (idle ranks) counted none.
            (merged.ExpertTokenCounts, merged.UtilizationSums) = (new ulong[state.ExpertTokenCounts.Length], new double[state.ExpertTokenCounts.Length]);
        }

        for (var e = 0; e < state.ExpertTokenCounts.Length; e++)
        {
            merged.ExpertTokenCounts[e] = Add(_within, merged.ExpertTokenCounts[e], state.ExpertTokenCounts[e], "expert_token_counts", e);
            merged.UtilizationSums![e] += state.UtilizationSums?[e] ?? weight * state.ExpertUtilization[e];
        }

        // The parts' histories joined end to end, as many as one state holds.
        foreach (var variance in state.LoadVarianceHistory)
        {
            _history.Add(variance, out _);
        }

        if (latency is not null)
        {
            _measurements = Add(_within, _measurements, latency.TotalMeasurements, "total_measurements");
            _latencies.Add((latency.TotalLatencyMs, latency.MinLatencyMs, latency.MaxLatencyMs));
            foreach (var recent in latency.RecentLatencies)
            {
                _recentLatencies.Add(recent, out _);
            }
        }

        _mergedParts += mergedParts;
        _parts++;
    }

    /// <summary>The merge of the parts added: a managed <see cref="RoutingStats"/> without decay (decayed utilization does not merge).</summary>
    /// <exception cref="ArgumentException">The latencies' total is not finite, or the parts combine more than <see cref="RoutingStats.MaxMergedParts"/> recordings.</exception>
    /// <exception cref="InvalidOperationException">No part was added.</exception>
    public RoutingStats Result()
    {
        // Whichever part fixed the experts, the merge keeps them, so that the order of the parts does not decide it.
        var options = (_options ?? throw new InvalidOperationException("A merge needs at least one part.")) with { Experts = _configured?.Experts ?? _options.Experts };
        var merged = _merged;
        var expertCount = merged.ExpertTokenCounts.Length;
        merged.ExpertUtilization = new float[expertCount];
        merged.UtilizationSums ??= new double[expertCount];
        double routings = merged.TotalRoutings;
        if (routings > 0)
        {
            merged.AverageLoadBalanceLoss = Kernels.LossMean.Of(merged.LoadBalanceLossSum!.Value, routings);
            merged.AverageRouterZLoss = Kernels.LossMean.Of(merged.RouterZLossSum!.Value, routings);
            merged.CapacityAverageUtilization = (float)(_capacityAverageSum / routings);
            for (var e = 0; e < expertCount; e++)
            {
                merged.ExpertUtilization[e] = (float)(merged.UtilizationSums[e] / routings);
            }
        }

        // Nothing routed in any part: every part's efficiency is its starting 0, and so is the merge's.
        merged.RoutingEfficiency = merged.RoutedSlots > 0
            ? (float)(merged.RoutedSlots - merged.SlotsDropped) / merged.RoutedSlots * 100.0f
            : 0f;
        merged.LoadVarianceHistory = [.. _history];

        // Each part's total is finite, their sum need not be; an infinite one is written as null, which no reader takes back.
        var totalLatency = _latencies.Sum(l => l.Total);
        if (!double.IsFinite(totalLatency))
        {
            throw new ArgumentException(
                string.Create(
                    System.Globalization.CultureInfo.InvariantCulture,
                    $"The merged total_latency_ms exceeds {double.MaxValue} ({string.Join(" + ", _latencies.Select(l => l.Total.ToString(System.Globalization.CultureInfo.InvariantCulture)))}), the most a snapshot holds; these snapshots cannot be combined."),
                "parts");
        }

        var result = RoutingStats.FromState(options with { UtilizationDecay = null }, merged, MergedParts(_mergedParts));
        if (_latencies.Count == 0)
        {
            // A model's layers: their model keeps no latencies.
            return result;
        }

        result.RoutingLatencyStats.Restore(_measurements, totalLatency, _latencies.Min(l => l.Min), _latencies.Max(l => l.Max), _recentLatencies);
        return result;
    }

    private static string Capacity(RoutingStatsOptions options) =>
        options.ExpertCapacity is { } slots ? Invariant($"a capacity of {slots} per expert") : "no capacity";

    /// <summary>The recordings a merge combines, <paramref name="sum"/> of its parts' <see cref="RoutingStats.MergedParts"/>, refused past <see cref="RoutingStats.MaxMergedParts"/>.</summary>
    public static int MergedParts(long sum) =>
        sum <= RoutingStats.MaxMergedParts
            ? (int)sum
            : throw new ArgumentException(Invariant($"The merge would combine {sum:N0} recordings (merged_parts); at most {RoutingStats.MaxMergedParts:N0} merge."), "parts");

    /// <summary>
    /// Exact sums of counters, refused where they pass the largest count a snapshot file holds
    /// (<see cref="Serialization.RoutingStatsJson.MaxCount"/>, 2^63 − 1), so that every merge can be saved and read back;
    /// a refusal names <paramref name="field"/>, or its entry <paramref name="index"/> where that is not -1, after <paramref name="within"/>.
    /// </summary>
    internal static ulong Add(string within, ulong total, ulong part, string field, int index = -1)
    {
        var sum = (UInt128)total + part;
        return sum <= Serialization.RoutingStatsJson.MaxCount
            ? (ulong)sum
            : throw new ArgumentException(
                Invariant($"The merged {within}{Serialization.RoutingStatsJson.Entry(field, index)} exceeds {Serialization.RoutingStatsJson.MaxCount:N0} ({total} + {part}), the most a snapshot holds; these snapshots cannot be combined exactly."), "parts");
    }
}
