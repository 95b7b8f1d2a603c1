namespace MoeGpuStats;

/// <summary>One (token, rank) slot that the router gave to an expert.</summary>
/// <param name="ExpertId">The expert that received the slot.</param>
/// <param name="Probability">The router's gate probability for this expert.</param>
/// <param name="TokenIndex">The token's index in its batch.</param>
/// <param name="ExpertRank">The rank of this expert among the token's top-k choices (0 = best).</param>
public readonly record struct ExpertAssignment(int ExpertId, float Probability, int TokenIndex, int ExpertRank)
{
    /// <summary>The record's members in the compiler's form, numbers written invariantly (<see cref="RecordText"/>).</summary>
    public override string ToString() => RecordText.Of(this);
}
