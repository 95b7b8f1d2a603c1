using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>
/// Quad-load counting (<see cref="HistogramCounting.QuadLoadRuns"/>) on views that start anywhere: the 128-bit
/// loads begin at the first 16-byte boundary the launcher finds, and the ids before it and after the
/// last whole quad are counted once.
/// </summary>
public sealed class QuadLoadRunCountingTests
{
    /// <summary>
    /// Every start modulo 8 ids, at lengths shorter than the first boundary, around whole quads and
    /// large: the device counts equal the managed engine's after each record. On the CPU accelerator
    /// a misaligned 128-bit view fails ILGPU's alignment assertion; on CUDA the load faults.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void EveryStartAndLengthGivesTheManagedCounts(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        Assert.SkipUnless(RoutingRecordKernel.Supports(device, HistogramCounting.QuadLoadRuns, out var reason), reason ?? "");
        const int experts = 61;
        var host = LoadIds.Ids(new Random(31), 100_000, experts, "invalid");
        using var buffer = device.Allocate1D(host);
        var options = new RoutingStatsOptions { Experts = experts };
        using var onDevice = new DeviceRoutingStats(device, options, stream: null, new RecordKernelPolicy { Counting = HistogramCounting.QuadLoadRuns });
        using var managed = new RoutingStats(options);
        foreach (var start in Enumerable.Range(0, 8))
        {
            foreach (var length in new[] { 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 1000, 4099, host.Length - start })
            {
                onDevice.RecordRouting(buffer.View.SubView(start, length), length, 1);
                managed.RecordRouting(host.AsSpan(start, length), length, 1);
                using var snapshot = onDevice.Snapshot();
                Assert.True(managed.ExpertTokenCounts.SequenceEqual(snapshot.ExpertTokenCounts), $"{length} ids from {start}: counts differ");
                Assert.True(managed.InvalidExpertIds == snapshot.InvalidExpertIds, $"{length} ids from {start}: invalid {managed.InvalidExpertIds} managed, {snapshot.InvalidExpertIds} device");
            }
        }
    }
}
