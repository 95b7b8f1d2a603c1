namespace MoeGpuStats.Engines;

/// <summary>
/// The whole routing state as plain arrays and scalars: what moves between engines, snapshots
/// and JSON. Latency is not here; it lives on the host in <see cref="LatencyStats"/>.
/// </summary>
internal sealed class RoutingState
{
    public ulong TotalRoutings;
    public ulong TotalTokens;
    public ulong TokensDropped;
    public ulong InvalidExpertIds;
    public float AverageLoadBalanceLoss;
    public float AverageRouterZLoss;
    public float RoutingEfficiency;
    public float[] ExpertUtilization = [];
    public float[] DecayedExpertUtilization = [];
    public ulong[] ExpertTokenCounts = [];
    public float[] LoadVarianceHistory = [];
    public float CapacityAverageUtilization;
    public float CapacityPeakUtilization;
    public ulong CapacityExceededCount;
    public ulong TotalCapacity;
    public ulong TotalUsed;
}
