namespace MoeGpuStats;

/// <summary>
/// The router's output for one batch: the per-expert slot histogram and the batch's losses.
/// Mirrors the seed's <c>RoutingDecision</c>, so its struct literals read the same:
/// <c>new RoutingDecision { ExpertCapacities = [5, 3, 2, 0], TotalTokens = 10 }</c>.
/// </summary>
public sealed record RoutingDecision
{
    /// <summary>The record's members in the compiler's form, numbers written invariantly (<see cref="RecordText"/>).</summary>
    public override string ToString() => RecordText.Of(this);

    /// <summary>Creates an empty decision; set the properties with an object initializer.</summary>
    public RoutingDecision()
    {
    }

    /// <summary>
    /// Creates a decision the way the seed's <c>RoutingDecision::new</c> does: <see cref="TokensDropped"/>
    /// is derived as <c>max(0, totalTokens - tokens with at least one assignment)</c>.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="expertAssignments"/> or <paramref name="expertCapacities"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="totalTokens"/> is negative.</exception>
    public RoutingDecision(
        IReadOnlyList<IReadOnlyList<ExpertAssignment>> expertAssignments,
        IReadOnlyList<int> expertCapacities,
        int totalTokens,
        float loadBalanceLoss,
        float routerZLoss,
        float auxiliaryLoss)
    {
        ArgumentNullException.ThrowIfNull(expertAssignments);
        ArgumentNullException.ThrowIfNull(expertCapacities);
        OutOfRange.ThrowIfNegative(totalTokens);

        var assigned = 0;
        foreach (var token in expertAssignments)
        {
            if (token is { Count: > 0 })
            {
                assigned++;
            }
        }

        ExpertAssignments = expertAssignments;
        ExpertCapacities = expertCapacities;
        TotalTokens = totalTokens;
        TokensDropped = Math.Max(0, totalTokens - assigned);
        LoadBalanceLoss = loadBalanceLoss;
        RouterZLoss = routerZLoss;
        AuxiliaryLoss = auxiliaryLoss;
    }

    /// <summary>Per token, the experts it was sent to. The statistics never read it.</summary>
    public IReadOnlyList<IReadOnlyList<ExpertAssignment>> ExpertAssignments { get; init; } = [];

    /// <summary>Per expert, how many token slots it received in this batch (a histogram, despite the name).</summary>
    public IReadOnlyList<int> ExpertCapacities { get; init; } = [];

    /// <summary>Tokens in the batch.</summary>
    public int TotalTokens { get; init; }

    /// <summary>Tokens that found no expert with room.</summary>
    public int TokensDropped { get; init; }

    /// <summary>The router's auxiliary load-balancing loss for the batch.</summary>
    public float LoadBalanceLoss { get; init; }

    /// <summary>The router's z-loss for the batch.</summary>
    public float RouterZLoss { get; init; }

    /// <summary>The weighted sum of the two losses.</summary>
    public float AuxiliaryLoss { get; init; }
}
