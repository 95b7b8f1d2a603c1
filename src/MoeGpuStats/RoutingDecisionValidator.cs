using System.Runtime.InteropServices;
using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>The checks every engine makes before a decision touches any state.</summary>
internal static class RoutingDecisionValidator
{
    /// <summary>Checks <paramref name="decision"/> as given; returns the experts it holds, the count an engine reads (<see cref="ReadCounts"/>).</summary>
    public static int Validate(RoutingDecision? decision, string paramName)
    {
        ArgumentNullException.ThrowIfNull(decision, paramName);
        var counts = decision.ExpertCapacities;
        var experts = counts?.Count ?? 0;
        if (counts is null || experts == 0)
        {
            throw new ArgumentException(
                "The routing decision has no experts (ExpertCapacities is empty); the seed divides 0 by 0 on such a decision.",
                paramName);
        }

        if (experts > RoutingStatsOptions.MaxExperts)
        {
            throw new ArgumentException(Invariant($"ExpertCapacities holds {experts:N0} experts; a decision has at most {RoutingStatsOptions.MaxExperts:N0}."), paramName);
        }

        var (negative, count) = TryGetSpan(counts, out var span) ? IndexOfNegative(span) : IndexOfNegative(counts, experts);
        if (negative >= 0)
        {
            throw new ArgumentException(Invariant($"ExpertCapacities[{negative}] is {count}; slot counts cannot be negative."), paramName);
        }

        ValidateScalars(decision.TotalTokens, decision.TokensDropped, decision.LoadBalanceLoss, decision.RouterZLoss, paramName);
        return experts;
    }

    /// <summary>
    /// Reads the counts once into the engine's own <paramref name="destination"/>, which holds the experts
    /// <see cref="Validate"/> returned, and checks what was read: a list of the caller's may change after the checks
    /// (another thread, a computed list), and neither another length nor a negative count may reach the state.
    /// </summary>
    /// <exception cref="ArgumentException">The list holds another number of experts now, or a count read is negative.</exception>
    public static void ReadCounts(IReadOnlyList<int> counts, Span<int> destination, string paramName)
    {
        var isSpan = TryGetSpan(counts, out var span);
        var experts = isSpan ? span.Length : counts.Count;
        if (experts != destination.Length)
        {
            throw new ArgumentException(Invariant($"ExpertCapacities held {destination.Length:N0} experts when checked and {experts:N0} when read; a decision's counts must not change while it is recorded."), paramName);
        }

        if (isSpan)
        {
            span.CopyTo(destination);
        }
        else
        {
            for (var i = 0; i < destination.Length; i++)
            {
                destination[i] = counts[i];
            }
        }

        var (negative, count) = IndexOfNegative(destination);
        if (negative >= 0)
        {
            throw new ArgumentException(Invariant($"ExpertCapacities[{negative}] read {count} after the checks; a decision's counts must not change while it is recorded."), paramName);
        }
    }

    /// <summary>The counts as a span without copying, where the list is an array or a <see cref="List{T}"/>.</summary>
    private static bool TryGetSpan(IReadOnlyList<int> counts, out ReadOnlySpan<int> span)
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

    /// <summary>The first negative count and its value, as read once; (−1, 0) where none is.</summary>
    private static (int Index, int Count) IndexOfNegative(ReadOnlySpan<int> counts) =>
        counts.IndexOfAnyInRange(int.MinValue, -1) is var index and >= 0 ? (index, counts[index]) : (-1, 0);

    /// <inheritdoc cref="IndexOfNegative(ReadOnlySpan{int})"/>
    private static (int Index, int Count) IndexOfNegative(IReadOnlyList<int> counts, int experts)
    {
        for (var i = 0; i < experts; i++)
        {
            if (counts[i] is var count && count < 0)
            {
                return (i, count);
            }
        }

        return (-1, 0);
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
