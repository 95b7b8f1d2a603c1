using static System.FormattableString;

namespace MoeGpuStats.Engines;

/// <summary>The checks on a record from top-k ids that every engine makes before touching state.</summary>
internal static class RecordChecks
{
    /// <summary>
    /// The most ids one record takes (<c>tokens × topK</c>): every count of a batch is exact up to it
    /// (the device's per-group counts are 32-bit).
    /// </summary>
    public const int MaxIdsPerRecord = int.MaxValue;

    /// <summary>Throws, naming the argument in the caller's words, unless the record can be folded as given.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topK"/> or <paramref name="tokens"/> is out of range.</exception>
    /// <exception cref="ArgumentException">Too few ids or too many, a dropped count outside [0, tokens] or beside a capacity, or a non-finite loss.</exception>
    public static void Validate(RoutingStatsOptions options, long available, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss, string idsName)
    {
        if (topK < 1)
        {
            throw OutOfRange.Error(nameof(topK), topK, "it must be at least 1.");
        }

        OutOfRange.ThrowIfNegative(tokens);

        var needed = (long)tokens * topK;
        if (needed > MaxIdsPerRecord)
        {
            throw new ArgumentException(
                Invariant($"tokens * topK = {tokens} * {topK} = {needed:N0} ids; one record takes at most {MaxIdsPerRecord:N0} (2^31 - 1): record the batch in parts."),
                nameof(tokens));
        }

        if (available < needed)
        {
            throw new ArgumentException(Invariant($"{idsName} holds {Plural.Of(available, "value")}; tokens * topK = {tokens} * {topK} = {needed:N0} are needed."), idsName);
        }

        if (tokensDropped < 0 || tokensDropped > tokens)
        {
            throw new ArgumentException(Invariant($"tokensDropped is {tokensDropped}; it must lie in [0, tokens = {tokens}]."), nameof(tokensDropped));
        }

        if (tokensDropped != 0 && options.ExpertCapacity is { } capacity)
        {
            throw new ArgumentException(
                Invariant($"tokensDropped is {tokensDropped}, but ExpertCapacity ({capacity}) derives the dropped slots from the ids; pass 0, or leave ExpertCapacity unset to report drops yourself."),
                nameof(tokensDropped));
        }

        if (!float.IsFinite(loadBalanceLoss))
        {
            throw new ArgumentException(Invariant($"loadBalanceLoss is {loadBalanceLoss}; losses must be finite."), nameof(loadBalanceLoss));
        }

        if (!float.IsFinite(routerZLoss))
        {
            throw new ArgumentException(Invariant($"routerZLoss is {routerZLoss}; losses must be finite."), nameof(routerZLoss));
        }
    }

    /// <summary>The expert count for ids: the configured one, else the state's.</summary>
    public static int ResolveExperts(RoutingStatsOptions options, int current) =>
        options.Experts ?? (current > 0
            ? current
            : throw new InvalidOperationException(
                "Recording from top-k ids needs the expert count: set RoutingStatsOptions.Experts, or record a RoutingDecision first."));
}
