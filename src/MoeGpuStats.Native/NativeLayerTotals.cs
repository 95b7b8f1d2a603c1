using System.Runtime.InteropServices;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Native;

/// <summary>
/// The C struct <c>moegs_layer_totals</c>: one layer's running totals, named and typed as
/// <c>moegs_snapshot</c>'s fields of the same names; field order and types match include/moegs.h.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct NativeLayerTotals
{
    public ulong TotalRoutings;
    public ulong TotalTokens;
    public ulong TokensDropped;
    public ulong RoutedSlots;
    public ulong SlotsDropped;
    public ulong InvalidExpertIds;
    public float AverageLoadBalanceLoss;
    public float AverageRouterZLoss;
    public float RoutingEfficiency;

    internal static NativeLayerTotals From(RoutingTotals totals) => new()
    {
        TotalRoutings = totals.TotalRoutings,
        TotalTokens = totals.TotalTokens,
        TokensDropped = totals.TokensDropped,
        RoutedSlots = totals.RoutedSlots,
        SlotsDropped = totals.SlotsDropped,
        InvalidExpertIds = totals.InvalidExpertIds,
        AverageLoadBalanceLoss = totals.AverageLoadBalanceLoss,
        AverageRouterZLoss = totals.AverageRouterZLoss,
        RoutingEfficiency = totals.RoutingEfficiency,
    };
}
