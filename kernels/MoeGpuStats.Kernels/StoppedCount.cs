namespace MoeGpuStats.Kernels;

/// <summary>
/// A total of slots (of capacity, or used) and more, stopped at <see cref="RoutingStateLayout.MaxCount"/>, the most a
/// snapshot holds, where the seed's u64 wraps: 4,096 experts of 2^31 − 1 slots reach it in just over 2^20 batches, and
/// decisions of a million experts in about 4,100. The device fold, the managed engine and a merge all add here, so that
/// they agree. A total never passes the stop, so the headroom does not underflow.
/// </summary>
internal static class StoppedCount
{
    public static ulong Add(ulong total, ulong added) => total + Math.Min(added, RoutingStateLayout.MaxCount - total);
}
