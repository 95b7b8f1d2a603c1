using ILGPU.Runtime;
using MoeGpuStats.Lab;

namespace MoeGpuStats.Tests.Lab;

/// <summary>ILGPU.Algorithms' histogram, the benchmarks' baseline for a C# user of ILGPU: it must count what a record counts.</summary>
public sealed class AlgorithmsHistogramTests
{
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void ItCountsEachExpertAsARecordDoesAndSkipsPaddingAndInvalidIds(string kind)
    {
        const int experts = 16;
        var accelerator = TestAccelerators.Require(kind);
        var random = new Random(8);
        var ids = Enumerable.Range(0, 4096).Select(_ => random.Next(20) switch
        {
            0 => -1,
            1 => experts + 5,
            _ => (int)(random.NextDouble() * random.NextDouble() * experts),
        }).ToArray();
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = experts });
        stats.RecordRouting(ids, tokens: ids.Length / 8, topK: 8);
        using var deviceIds = accelerator.Allocate1D(ids);
        using var bins = accelerator.Allocate1D<int>(experts);
        bins.MemSetToZero();

        new AlgorithmsHistogram(accelerator).Count(accelerator.DefaultStream, deviceIds.View, bins.View);

        accelerator.Synchronize();
        Assert.Equal(stats.ExpertTokenCounts.Select(count => (int)count), bins.GetAsArray1D());
    }
}
