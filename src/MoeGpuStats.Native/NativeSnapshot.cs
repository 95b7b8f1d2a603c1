using System.Runtime.InteropServices;

namespace MoeGpuStats.Native;

/// <summary>
/// The C struct <c>moegs_snapshot</c>; field order and types match include/moegs.h (documented there).
/// NativeApiTests compares this layout with the header's field by field, and libmoegs refuses to start
/// when <c>sizeof</c> differs from its own, since the snapshot is written through the caller's pointer.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct NativeSnapshot
{
    public ulong TotalRoutings;
    public ulong TotalTokens;
    public ulong TokensDropped;
    public ulong RoutedSlots;
    public ulong SlotsDropped;
    public ulong InvalidExpertIds;
    public ulong CapacityExceededCount;
    public ulong TotalCapacity;
    public ulong TotalUsed;
    public ulong LatencyMeasurements;
    public double AverageLatencyMs;
    public double P95LatencyMs;
    public double P99LatencyMs;
    public float AverageLoadBalanceLoss;
    public float AverageRouterZLoss;
    public float RoutingEfficiency;
    public float UtilizationCv;
    public float CapacityAverageUtilization;
    public float CapacityPeakUtilization;
    public float MostUtilization;
    public float LeastUtilization;
    public float LoadVarianceTrend100;
    public int Experts;
    public int MostUtilized;
    public int LeastUtilized;
    public int LoadVarianceHistoryLength;

    /// <summary>The C struct of a snapshot (an aggregator's, or one layer of a model).</summary>
    internal static NativeSnapshot From(RoutingStats s)
    {
        var most = s.MostUtilizedExpert();
        var least = s.LeastUtilizedExpert();
        var capacity = s.CapacityStats;
        var latency = s.RoutingLatencyStats;
        return new NativeSnapshot
        {
            TotalRoutings = s.TotalRoutings,
            TotalTokens = s.TotalTokens,
            TokensDropped = s.TokensDropped,
            RoutedSlots = s.RoutedSlots,
            SlotsDropped = s.SlotsDropped,
            InvalidExpertIds = s.InvalidExpertIds,
            CapacityExceededCount = capacity.CapacityExceededCount,
            TotalCapacity = capacity.TotalCapacity,
            TotalUsed = capacity.TotalUsed,
            LatencyMeasurements = latency.TotalMeasurements,
            AverageLatencyMs = latency.AverageLatency(),
            P95LatencyMs = latency.P95Latency(),
            P99LatencyMs = latency.P99Latency(),
            AverageLoadBalanceLoss = s.AverageLoadBalanceLoss,
            AverageRouterZLoss = s.AverageRouterZLoss,
            RoutingEfficiency = s.RoutingEfficiency,
            UtilizationCv = s.UtilizationCv(),
            CapacityAverageUtilization = capacity.AverageUtilization,
            CapacityPeakUtilization = capacity.PeakUtilization,
            MostUtilization = most?.Utilization ?? 0f,
            LeastUtilization = least?.Utilization ?? 0f,
            LoadVarianceTrend100 = s.RecentLoadVarianceTrend(100),
            Experts = s.ExpertUtilization.Count,
            MostUtilized = most?.Index ?? -1,
            LeastUtilized = least?.Index ?? -1,
            LoadVarianceHistoryLength = s.LoadVarianceHistory.Count,
        };
    }
}
