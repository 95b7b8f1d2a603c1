using static System.FormattableString;

namespace MoeGpuStats.Engines;

/// <summary>Combines the states of several ranks or replicas that route to the same experts.</summary>
internal static class RoutingStatsMerge
{
    /// <param name="parts">The statistics to combine.</param>
    /// <param name="within">What the parts are within, prefixed to a refused count's name: <c>layers[3].</c> for a model's layer.</param>
    public static RoutingStats Merge(IReadOnlyList<RoutingStats> parts, string within = "")
    {
        var states = parts.Select(p => p.ExportState()).ToArray();
        // The experts the parts count must agree, and so must the experts their options fix; not the one
        // with the other, since options fix the experts of records of ids only and a decision of another
        // count may follow (an idle rank beside one that recorded such a decision merges).
        int? Counted(int part) => states[part].ExpertUtilization.Length is > 0 and var e ? e : null;
        if (Disagreeing(parts.Count, Counted, skipNull: true) is var (first, other))
        {
            throw new ArgumentException(Invariant($"Only the same experts merge: parts[{first}] counts {Counted(first)} experts, parts[{other}] {Counted(other)}."), nameof(parts));
        }

        int? Configured(int part) => parts[part].Options.Experts;
        if (Disagreeing(parts.Count, Configured, skipNull: true) is var (a, b))
        {
            throw new ArgumentException(Invariant($"Only the same experts merge: parts[{a}] has Experts = {Configured(a)}, parts[{b}] {Configured(b)}."), nameof(parts));
        }

        // A capacity derives drops and an unset one does not, even where its placeholder is the same number.
        string Capacity(int part) => parts[part].Options.ExpertCapacity is { } slots ? Invariant($"a capacity of {slots} per expert") : "no capacity";
        if (Disagreeing(parts.Count, part => parts[part].Options.ExpertCapacity, skipNull: false) is var (c, d))
        {
            throw new ArgumentException(Invariant($"Only the same capacity merges: parts[{c}] has {Capacity(c)}, parts[{d}] {Capacity(d)}."), nameof(parts));
        }

        var expertCount = states.Select(s => s.ExpertUtilization.Length).FirstOrDefault(e => e > 0);
        var merged = new RoutingState
        {
            ExpertUtilization = new float[expertCount],
            ExpertTokenCounts = new ulong[expertCount],
            UtilizationSums = new double[expertCount],
            LoadBalanceLossSum = 0,
            RouterZLossSum = 0,
        };
        double capacityAverageSum = 0;
        var history = new List<float>();
        foreach (var state in states)
        {
            merged.TotalRoutings = Add(within, merged.TotalRoutings, state.TotalRoutings, "total_routings");
            merged.TotalTokens = Add(within, merged.TotalTokens, state.TotalTokens, "total_tokens");
            merged.TokensDropped = Add(within, merged.TokensDropped, state.TokensDropped, "tokens_dropped");
            merged.RoutedSlots = Add(within, merged.RoutedSlots, state.RoutedSlots, "routed_slots");
            merged.SlotsDropped = Add(within, merged.SlotsDropped, state.SlotsDropped, "slots_dropped");
            merged.InvalidExpertIds = Add(within, merged.InvalidExpertIds, state.InvalidExpertIds, "invalid_expert_ids");
            merged.CapacityExceededCount = Add(within, merged.CapacityExceededCount, state.CapacityExceededCount, "capacity_exceeded_count");
            merged.TotalCapacity = Add(within, merged.TotalCapacity, state.TotalCapacity, "total_capacity");
            merged.TotalUsed = Add(within, merged.TotalUsed, state.TotalUsed, "total_used");
            merged.CapacityPeakUtilization = Math.Max(merged.CapacityPeakUtilization, state.CapacityPeakUtilization);
            double weight = state.TotalRoutings;
            merged.LoadBalanceLossSum += state.LoadBalanceLossSum ?? weight * state.AverageLoadBalanceLoss;
            merged.RouterZLossSum += state.RouterZLossSum ?? weight * state.AverageRouterZLoss;
            capacityAverageSum += weight * state.CapacityAverageUtilization;
            for (var e = 0; e < state.ExpertTokenCounts.Length; e++)
            {
                merged.ExpertTokenCounts[e] = Add(within, merged.ExpertTokenCounts[e], state.ExpertTokenCounts[e], "expert_token_counts", e);
                merged.UtilizationSums[e] += state.UtilizationSums?[e] ?? weight * state.ExpertUtilization[e];
            }

            history.AddRange(state.LoadVarianceHistory);
        }

        double routings = merged.TotalRoutings;
        if (routings > 0)
        {
            merged.AverageLoadBalanceLoss = (float)(merged.LoadBalanceLossSum / routings);
            merged.AverageRouterZLoss = (float)(merged.RouterZLossSum / routings);
            merged.CapacityAverageUtilization = (float)(capacityAverageSum / routings);
            for (var e = 0; e < expertCount; e++)
            {
                merged.ExpertUtilization[e] = (float)(merged.UtilizationSums[e] / routings);
            }
        }

        // Nothing routed in any part: every part's efficiency is its starting 0, and so is the merge's.
        merged.RoutingEfficiency = merged.RoutedSlots > 0
            ? (float)(merged.RoutedSlots - merged.SlotsDropped) / merged.RoutedSlots * 100.0f
            : 0f;
        merged.LoadVarianceHistory = [.. history.TakeLast(ManagedRoutingEngine.HistoryWindow)];

        var latencies = parts.Select(p => p.RoutingLatencyStats.Copy()).ToArray();
        var measurements = latencies.Aggregate(0UL, (sum, l) => Add(within, sum, l.TotalMeasurements, "total_measurements"));
        // Each part's total is finite, their sum need not be; an infinite one is written as null, which no reader takes back.
        var totalLatency = latencies.Sum(l => l.TotalLatencyMs);
        if (!double.IsFinite(totalLatency))
        {
            throw new ArgumentException(
                string.Create(
                    System.Globalization.CultureInfo.InvariantCulture,
                    $"The merged total_latency_ms exceeds {double.MaxValue} ({string.Join(" + ", latencies.Select(l => l.TotalLatencyMs.ToString(System.Globalization.CultureInfo.InvariantCulture)))}), the most a snapshot holds; these snapshots cannot be combined."),
                "parts");
        }

        var options = parts[0].Options with { UtilizationDecay = null };
        var result = RoutingStats.FromState(options, merged, MergedParts(parts.Select(p => p.MergedParts)));
        result.RoutingLatencyStats.Restore(
            measurements,
            totalLatency,
            latencies.Min(l => l.MinLatencyMs),
            latencies.Max(l => l.MaxLatencyMs),
            latencies.SelectMany(l => l.RecentLatencies).TakeLast(LatencyStats.WindowSize));
        return result;
    }

    /// <summary>The recordings a merge of <paramref name="parts"/> combines, refused past <see cref="RoutingStats.MaxMergedParts"/>.</summary>
    public static int MergedParts(IEnumerable<int> parts)
    {
        var sum = parts.Sum(p => (long)p);
        return sum <= RoutingStats.MaxMergedParts
            ? (int)sum
            : throw new ArgumentException(Invariant($"The merge would combine {sum:N0} recordings (merged_parts); at most {RoutingStats.MaxMergedParts:N0} merge."), "parts");
    }

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

    /// <summary>
    /// The first part with a value (any, or with <paramref name="skipNull"/> a non-null one) and the first after
    /// it whose value differs; null where all agree.
    /// </summary>
    private static (int First, int Other)? Disagreeing(int count, Func<int, int?> value, bool skipNull)
    {
        var first = -1;
        for (var part = 0; part < count; part++)
        {
            if (skipNull && value(part) is null)
            {
                continue;
            }

            if (first < 0)
            {
                first = part;
            }
            else if (value(part) != value(first))
            {
                return (first, part);
            }
        }

        return null;
    }
}
