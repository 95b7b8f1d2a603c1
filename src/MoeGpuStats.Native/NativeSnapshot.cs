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
}
