using System.Diagnostics;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Tests.Device;

public sealed class DeviceBehaviourTests
{
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void ExpertCountChangesAndResetBehaveAsOnTheManagedEngine(string accelerator)
    {
        using var onDevice = RoutingStats.OnDevice(TestAccelerators.Require(accelerator));
        using var managed = new RoutingStats();
        foreach (var stats in new[] { onDevice, managed })
        {
            stats.RecordRouting(new RoutingDecision { ExpertCapacities = [4, 4], TotalTokens = 8 });
            stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2, 3], TotalTokens = 6, TokensDropped = 1 });
        }

        Assert.Equal(managed.ExpertTokenCounts, onDevice.ExpertTokenCounts);
        Assert.Equal(managed.ExpertUtilization, onDevice.ExpertUtilization);
        Assert.Equal(managed.TokensDropped, onDevice.TokensDropped);
        onDevice.Reset();
        Assert.Equal(0UL, onDevice.TotalRoutings);
        Assert.Empty(onDevice.ExpertUtilization);
        Assert.Null(onDevice.MostUtilizedExpert());
    }

    [Fact]
    public void CreateHonoursTheAcceleratorVariable()
    {
        var previous = Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable);
        try
        {
            Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, "cpu");
            using (var cpu = RoutingStats.Create())
            {
                Assert.Equal("cpu", cpu.Backend);
            }

            Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, "managed");
            using (var managed = RoutingStats.Create())
            {
                Assert.Equal("managed", managed.Backend);
            }

            Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, "tpu");
            Assert.Throws<InvalidOperationException>(() => RoutingStats.Create());
        }
        finally
        {
            Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, previous);
        }
    }

    /// <summary>
    /// A thousand records must return to the host before the device has finished them, and allocate
    /// nothing on the host. Only a real GPU runs kernels asynchronously; ILGPU's CPU accelerator runs
    /// each launch to completion (and allocates for its own scheduling).
    /// </summary>
    [Fact]
    public void AThousandRecordsReturnBeforeTheDeviceFinishes()
    {
        var device = TestAccelerators.Require("cuda");
        const int length = 64 << 20;
        using var ids = device.Allocate1D<int>(length);
        ids.MemSetToZero();
        device.Synchronize();
        using var stats = RoutingStats.OnDevice(device, new RoutingStatsOptions { Experts = 256 });

        stats.RecordRouting(ids.View, length / 8, 8);
        var allocatedAfter = new long[999];
        var enqueue = Stopwatch.StartNew();
        var allocatedBefore = RecordAndCountAllocations(stats, ids.View, allocatedAfter);
        var enqueued = enqueue.Elapsed;
        var total = stats.TotalRoutings;
        var finished = enqueue.Elapsed;

        var allocated = allocatedAfter[^1] - allocatedBefore;
        var firstAllocating = Array.FindIndex(allocatedAfter, bytes => bytes != allocatedBefore);
        Assert.Equal(1000UL, total);
        TestContext.Current.SendDiagnosticMessage($"1000 records of 64 Mi ids: enqueued in {enqueued.TotalMilliseconds:F1} ms, finished after {finished.TotalMilliseconds:F1} ms, {allocated} bytes allocated");
        Assert.True(allocated == 0, $"{allocated} bytes allocated over 999 records, the first by record {firstAllocating + 2}");
        Assert.True(enqueued < finished / 4, $"enqueue took {enqueued.TotalMilliseconds:F1} ms of {finished.TotalMilliseconds:F1} ms: the records waited for the device");
    }

    /// <summary>
    /// Records once per element of <paramref name="allocatedAfter"/>, writing the thread's allocated bytes
    /// after each record, and returns them before the first. Fully optimized from its first call, so
    /// that no on-stack replacement of this loop allocates in the middle of it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static long RecordAndCountAllocations(RoutingStats stats, ArrayView<int> ids, long[] allocatedAfter)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < allocatedAfter.Length; i++)
        {
            stats.RecordRouting(ids, (int)(ids.Length / 8), 8);
            allocatedAfter[i] = GC.GetAllocatedBytesForCurrentThread();
        }

        return before;
    }
}
