namespace MoeGpuStats.Tests;

/// <summary><see cref="RoutingDecision"/>'s own constructor.</summary>
public sealed class RoutingDecisionTests
{
    [Fact]
    public void TheDerivingConstructorCountsTokensWithoutAnExpert()
    {
        IReadOnlyList<ExpertAssignment>[] assignments = [[new(0, 0.9f, 0, 0)], [], [new(1, 0.6f, 2, 0)]];
        var decision = new RoutingDecision(assignments, [1, 1], 4, 0.1f, 0.01f, 0.11f);
        Assert.Equal(2, decision.TokensDropped);
    }
}
