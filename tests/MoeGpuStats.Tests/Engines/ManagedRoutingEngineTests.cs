using MoeGpuStats.Engines;

namespace MoeGpuStats.Tests.Engines;

/// <summary>
/// A model allocates every layer's arrays before any layer starts its own: reserving changes no reading, so a
/// step that runs out of memory partway through the reservations leaves every layer as it was.
/// </summary>
public sealed class ManagedRoutingEngineTests
{
    [Theory]
    [InlineData(null)]
    [InlineData(0.9f)]
    public void ReservingARecordChangesNoReadingUntilTheArraysAreAdopted(float? decay)
    {
        var engine = new ManagedRoutingEngine(new RoutingStatsOptions { Experts = 64, UtilizationDecay = decay });
        var empty = engine.Export();

        var arrays = engine.ReserveRecord(64);

        Assert.NotNull(arrays);
        Assert.Equivalent(empty, engine.Export(), strict: true);
        Assert.Empty(engine.ExpertTokenCounts);
        Assert.Equal(0, engine.ExpertCount);

        engine.Adopt(arrays);
        Assert.Equal(new ulong[64], engine.ExpertTokenCounts);
        Assert.Equal(decay is null ? 0 : 64, engine.Export().DecayedExpertUtilization.Length);
        Assert.Null(engine.ReserveRecord(64));
    }
}
