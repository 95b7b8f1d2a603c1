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
    public ulong RoutedSlots;
    public ulong SlotsDropped;
    public float AverageLoadBalanceLoss;
    public float AverageRouterZLoss;
    public float RoutingEfficiency;
    public float[] ExpertUtilization = [];

    /// <summary>
    /// Per expert, the f64 sum of <c>count / tokens</c> that <see cref="ExpertUtilization"/> is the mean
    /// of; null where the source (a JSON file) has only the means, which are then taken as exact.
    /// </summary>
    public double[]? UtilizationSums;

    /// <summary>The f64 loss sums behind the averages; null where the source has only the averages.</summary>
    public double? LoadBalanceLossSum;

    public double? RouterZLossSum;

    /// <summary>The decayed utilization per expert in f64, as the engines keep it (the API shows it rounded to f32).</summary>
    public double[] DecayedExpertUtilization = [];
    public ulong[] ExpertTokenCounts = [];
    public float[] LoadVarianceHistory = [];
    public float CapacityAverageUtilization;
    public float CapacityPeakUtilization;
    public ulong CapacityExceededCount;
    public ulong TotalCapacity;
    public ulong TotalUsed;
}
