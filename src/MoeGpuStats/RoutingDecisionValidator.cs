using System.Runtime.InteropServices;
using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>The checks every engine makes before a decision touches any state.</summary>
internal static class RoutingDecisionValidator
{
    public static IReadOnlyList<int> Validate(RoutingDecision? decision, string paramName)
    {
        ArgumentNullException.ThrowIfNull(decision, paramName);
        var counts = decision.ExpertCapacities;
        if (counts is null || counts.Count == 0)
        {
            throw new ArgumentException(
                "The routing decision has no experts (ExpertCapacities is empty); the seed divides 0 by 0 on such a decision.",
                paramName);
        }

        if (counts.Count > RoutingStatsOptions.MaxExperts)
        {
            throw new ArgumentException(Invariant($"ExpertCapacities holds {counts.Count:N0} experts; a decision has at most {RoutingStatsOptions.MaxExperts:N0}."), paramName);
        }

        var negative = TryGetSpan(counts, out var span) ? span.IndexOfAnyInRange(int.MinValue, -1) : IndexOfNegative(counts);
        if (negative >= 0)
        {
            throw new ArgumentException(Invariant($"ExpertCapacities[{negative}] is {counts[negative]}; slot counts cannot be negative."), paramName);
        }

        ValidateScalars(decision.TotalTokens, decision.TokensDropped, decision.LoadBalanceLoss, decision.RouterZLoss, paramName);
        return counts;
    }

    /// <summary>The counts as a span without copying, where the list is an array or a <see cref="List{T}"/>.</summary>
    public static bool TryGetSpan(IReadOnlyList<int> counts, out ReadOnlySpan<int> span)
    {
        switch (counts)
        {
            case int[] array:
                span = array;
                return true;
            case List<int> list:
                span = CollectionsMarshal.AsSpan(list);
                return true;
            default:
                span = default;
                return false;
        }
    }

    /// <summary>
    /// Count <paramref name="index"/> as an engine reads it into its own buffer, after <see cref="Validate"/>:
    /// a list of the caller's own type may answer differently the second time (a concurrent writer, a
    /// computed list), and a negative count must not reach the state.
    /// </summary>
    public static int ReadAgain(IReadOnlyList<int> counts, int index, string paramName)
    {
        var count = counts[index];
        return count >= 0
            ? count
            : throw new ArgumentException(Invariant($"ExpertCapacities[{index}] read {count} after the checks; a decision's counts must not change while it is recorded."), paramName);
    }

    private static int IndexOfNegative(IReadOnlyList<int> counts)
    {
        for (var i = 0; i < counts.Count; i++)
        {
            if (counts[i] < 0)
            {
                return i;
            }
        }

        return -1;
    }

    public static void ValidateScalars(int totalTokens, int tokensDropped, float loadBalanceLoss, float routerZLoss, string paramName)
    {
        if (totalTokens < 0)
        {
            throw new ArgumentException(Invariant($"TotalTokens is {totalTokens}; it cannot be negative."), paramName);
        }

        if (tokensDropped < 0 || tokensDropped > totalTokens)
        {
            throw new ArgumentException(
                Invariant($"TokensDropped is {tokensDropped}; it must lie in [0, TotalTokens = {totalTokens}] (the seed wraps around above that)."),
                paramName);
        }

        if (!float.IsFinite(loadBalanceLoss))
        {
            throw new ArgumentException(Invariant($"LoadBalanceLoss is {loadBalanceLoss}; losses must be finite."), paramName);
        }

        if (!float.IsFinite(routerZLoss))
        {
            throw new ArgumentException(Invariant($"RouterZLoss is {routerZLoss}; losses must be finite."), paramName);
        }
    }
}
