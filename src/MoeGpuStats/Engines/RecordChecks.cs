namespace MoeGpuStats.Engines;

/// <summary>The checks on a record from top-k ids that every engine makes before touching state.</summary>
internal static class RecordChecks
{
    public static void Validate(long available, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss, string idsName)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(topK, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        RoutingDecisionValidator.ValidateScalars(tokens, tokensDropped, loadBalanceLoss, routerZLoss, nameof(tokensDropped));
        var needed = (long)tokens * topK;
        if (available < needed)
        {
            throw new ArgumentException($"The ids hold {available} values; tokens * topK = {tokens} * {topK} = {needed} are needed.", idsName);
        }
    }

    /// <summary>The expert count for ids: the configured one, else the state's.</summary>
    public static int ResolveExperts(RoutingStatsOptions options, int current) =>
        options.Experts ?? (current > 0
            ? current
            : throw new InvalidOperationException(
                "Recording from top-k ids needs the expert count: set RoutingStatsOptions.Experts, or record a RoutingDecision first."));
}
