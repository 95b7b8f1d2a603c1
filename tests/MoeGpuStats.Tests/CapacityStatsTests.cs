using static MoeGpuStats.Tests.Support.Decisions;

namespace MoeGpuStats.Tests;

/// <summary><see cref="CapacityStats"/> fed decisions directly.</summary>
public sealed class CapacityStatsTests
{
    [Theory]
    [MemberData(nameof(BadDecisions), MemberType = typeof(Decisions))]
    public void ABadDecisionIsRejectedByCapacityStats(string kind)
    {
        var capacity = new CapacityStats();
        Assert.ThrowsAny<ArgumentException>(() => capacity.Update(Bad(kind)));
        Assert.Equal(0UL, capacity.TotalCapacity);
        Assert.Equal(0f, capacity.AverageUtilization);
    }
}
