namespace MoeGpuStats.Engines;

/// <summary>Combines the states of several ranks or replicas that route to the same experts.</summary>
internal static class RoutingStatsMerge
{
    public static RoutingStats Merge(IReadOnlyList<RoutingStats> parts)
    {
        var states = parts.Select(p => p.ExportState()).ToArray();
        var experts = states.Select(s => s.ExpertUtilization.Length).Where(e => e > 0).Distinct().ToArray();
        if (experts.Length > 1)
        {
            throw new ArgumentException($"The snapshots have different expert counts ({string.Join(", ", experts)}); only the same experts merge.", nameof(parts));
        }

        var slots = parts.Select(p => p.Options.SlotsPerExpert).Distinct().ToArray();
        if (slots.Length > 1)
        {
            throw new ArgumentException($"The snapshots have different capacities per expert ({string.Join(", ", slots)}).", nameof(parts));
        }

        var expertCount = experts.FirstOrDefault();
        var merged = new RoutingState
        {
            ExpertUtilization = new float[expertCount],
            ExpertTokenCounts = new ulong[expertCount],
        };
        double routings = 0;
        double lossSum = 0, zLossSum = 0, capacityAverageSum = 0;
        var utilization = new double[expertCount];
        var history = new List<float>();
        foreach (var state in states)
        {
            merged.TotalRoutings += state.TotalRoutings;
            merged.TotalTokens += state.TotalTokens;
            merged.TokensDropped += state.TokensDropped;
            merged.InvalidExpertIds += state.InvalidExpertIds;
            merged.CapacityExceededCount += state.CapacityExceededCount;
            merged.TotalCapacity += state.TotalCapacity;
            merged.TotalUsed += state.TotalUsed;
            merged.CapacityPeakUtilization = Math.Max(merged.CapacityPeakUtilization, state.CapacityPeakUtilization);
            double weight = state.TotalRoutings;
            routings += weight;
            lossSum += weight * state.AverageLoadBalanceLoss;
            zLossSum += weight * state.AverageRouterZLoss;
            capacityAverageSum += weight * state.CapacityAverageUtilization;
            for (var e = 0; e < state.ExpertTokenCounts.Length; e++)
            {
                merged.ExpertTokenCounts[e] += state.ExpertTokenCounts[e];
                utilization[e] += weight * state.ExpertUtilization[e];
            }

            history.AddRange(state.LoadVarianceHistory);
        }

        if (routings > 0)
        {
            merged.AverageLoadBalanceLoss = (float)(lossSum / routings);
            merged.AverageRouterZLoss = (float)(zLossSum / routings);
            merged.CapacityAverageUtilization = (float)(capacityAverageSum / routings);
            for (var e = 0; e < expertCount; e++)
            {
                merged.ExpertUtilization[e] = (float)(utilization[e] / routings);
            }
        }

        merged.RoutingEfficiency = merged.TotalTokens > 0
            ? (float)(merged.TotalTokens - merged.TokensDropped) / merged.TotalTokens * 100.0f
            : states.Select(s => s.RoutingEfficiency).LastOrDefault(e => e > 0);
        merged.LoadVarianceHistory = [.. history.TakeLast(ManagedRoutingEngine.HistoryWindow)];

        var options = parts[0].Options with { UtilizationDecay = null };
        var result = RoutingStats.FromState(options, merged);
        var latencies = parts.Select(p => p.RoutingLatencyStats).ToArray();
        result.RoutingLatencyStats.Restore(
            (ulong)latencies.Sum(l => (decimal)l.TotalMeasurements),
            latencies.Sum(l => l.TotalLatencyMs),
            latencies.Min(l => l.MinLatencyMs),
            latencies.Max(l => l.MaxLatencyMs),
            latencies.SelectMany(l => l.RecentLatencies).TakeLast(LatencyStats.WindowSize));
        return result;
    }
}
