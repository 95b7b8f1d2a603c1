using ILGPU.Runtime;
using MoeGpuStats.Kernels;
using static MoeGpuStats.Tests.Support.LoadIds;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>
/// The record kernel's launcher called directly on a state of its own (<see cref="LauncherState"/>): it refuses
/// what would make the kernel write outside the state, the fold sums every copy the groups flushed into,
/// and the fold's means stay exact after a billion batches.
/// </summary>
public sealed class RoutingRecordKernelTests
{
    /// <summary>The usual kinds and a CPU accelerator whose records run on several groups.</summary>
    public static TheoryData<string> MultiGroupKinds => [.. TestAccelerators.Kinds.Select(row => row.Data).Append(TestAccelerators.CpuWithFourMultiprocessors)];

    /// <summary>
    /// The record kernel's public launcher refuses what would make the kernel write outside the state,
    /// and the kernel itself never writes past the variance ring (on ILGPU's CPU accelerator a view's
    /// own bounds check also stops that write; on a GPU only the kernel's guard does).
    /// </summary>
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void TheRecordLauncherRefusesBuffersExpertCountsAndCopiesOutsideTheStateAndNeverWritesPastTheRing(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var launch = RoutingRecordKernel.Create(device);
        using var buffers = new LauncherState(device, experts: 8);
        using var ids = device.Allocate1D([0, 1, 2]);
        var state = buffers.Views;
        var none = new RecordArguments { Buffer = -1 };

        var buffer = Assert.Throws<ArgumentOutOfRangeException>(() => launch(device.DefaultStream, ids.View, state, new RecordArguments { Experts = 4, Buffer = 2 }, none));
        Assert.Equal("arguments", buffer.ParamName);
        Assert.StartsWith("arguments.Buffer is 2; give -1 (no record) or a batch buffer, 0 to 1.", buffer.Message);
        var pendingBuffer = Assert.Throws<ArgumentOutOfRangeException>(() => launch(device.DefaultStream, ids.View, state, none, new RecordArguments { Experts = 4, Buffer = -2 }));
        Assert.Equal("pending", pendingBuffer.ParamName);
        Assert.StartsWith("pending.Buffer is -2;", pendingBuffer.Message);
        var experts = Assert.Throws<ArgumentOutOfRangeException>(() => launch(device.DefaultStream, ids.View, state, new RecordArguments { Experts = RoutingStateLayout.MaxExperts + 1, Buffer = 0 }, none));
        Assert.StartsWith($"arguments.Experts is {RoutingStateLayout.MaxExperts + 1}; give 1 to {RoutingStateLayout.MaxExperts}.", experts.Message);
        var shortState = Assert.Throws<ArgumentException>(() => launch(device.DefaultStream, ids.View, state, new RecordArguments { Experts = 9, Buffer = 0 }, none));
        Assert.Equal("state", shortState.ParamName);

        var record = launch(device.DefaultStream, ids.View, state, new RecordArguments { Experts = 8, Buffer = 1, Tokens = 3, TopK = 1, SlotsPerExpert = 100, UtilizationDecay = -1f }, none);
        Assert.Equal((1, 1), (record.Buffer, record.Copies));
        Assert.Equal([1UL, 1UL, 1UL, 0UL], buffers.Counts.GetAsArray1D().Skip(RoutingStateLayout.BufferLength).Take(4));

        // A pending record claiming more copies than its buffer holds would make the fold read past it.
        foreach (var copies in new[] { 0, RoutingStateLayout.MaxCopies + 1 })
        {
            var badCopies = Assert.Throws<ArgumentOutOfRangeException>(() => launch(device.DefaultStream, ids.View, state, none, record with { Copies = copies }));
            Assert.Equal("pending", badCopies.ParamName);
            Assert.StartsWith($"pending.Copies is {copies};", badCopies.Message);
        }

        // At the most experts a buffer holds fewer copies than the most: one more is refused too.
        using var wide = new LauncherState(device, RoutingStateLayout.MaxExperts);
        var tooMany = RoutingStateLayout.BufferLength / RoutingStateLayout.MaxExperts + 1;
        var wideCopies = Assert.Throws<ArgumentOutOfRangeException>(
            () => launch(device.DefaultStream, ids.View, wide.Views, none, record with { Experts = RoutingStateLayout.MaxExperts, Copies = tooMany }));
        Assert.Equal("pending", wideCopies.ParamName);
        Assert.StartsWith($"pending.Copies is {tooMany};", wideCopies.Message);

        Assert.Equal(0UL, buffers.Block.GetAsArray1D()[0].TotalRoutings);

        // A block no record kernel wrote, with a ring position past the ring: the fold updates the
        // block but drops the variance instead of writing it after the ring (here, into a guard zone).
        using var guardedRing = device.Allocate1D<float>(2 * RoutingStateLayout.VarianceWindow);
        guardedRing.MemSetToZero();
        buffers.Block.View.CopyFromCPU([new RoutingStateBlock { Experts = 8, VarianceHead = 2 * RoutingStateLayout.VarianceWindow + 200 }]);
        launch(device.DefaultStream, ids.View, state with { VarianceHistory = guardedRing.View.SubView(0, RoutingStateLayout.VarianceWindow) }, none, record);
        Assert.Equal(1UL, buffers.Block.GetAsArray1D()[0].TotalRoutings);
        Assert.All(guardedRing.GetAsArray1D(), value => Assert.Equal(0f, value));
    }

    /// <summary>
    /// The launch returns the copies its groups flushed into (more than one wherever a record runs
    /// on several groups and one copy per group is asked for); those copies sum to the ids' counts,
    /// nothing is written past them, and the fold of that record adds exactly their sum to the
    /// token counts and leaves the buffer zero.
    /// </summary>
    [Theory]
    [MemberData(nameof(MultiGroupKinds))]
    public void TheFoldSumsEveryCopyTheGroupsFlushedIntoAndLeavesThemZero(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        const int experts = 61;
        var launch = RoutingRecordKernel.Create(device, new RecordKernelPolicy { IdsPerThread = 1, GroupsPerCopy = 1, IdsPerBin = 0 });
        using var buffers = new LauncherState(device, experts);
        var host = Ids(new Random(5), 20_000, experts, "uniform");
        using var ids = device.Allocate1D(host);
        var none = new RecordArguments { Buffer = -1 };
        var arguments = new RecordArguments { Experts = experts, Buffer = 0, Tokens = host.Length, TopK = 1, SlotsPerExpert = 100, UtilizationDecay = -1f };

        var counted = launch(device.DefaultStream, ids.View, buffers.Views, arguments, none);

        var multiGroup = device.AcceleratorType != AcceleratorType.CPU || accelerator == TestAccelerators.CpuWithFourMultiprocessors;
        Assert.InRange(counted.Copies, multiGroup ? 2 : 1, multiGroup ? RoutingStateLayout.MaxCopies : 1);
        var firstBuffer = buffers.Counts.GetAsArray1D().AsSpan(0, RoutingStateLayout.BufferLength).ToArray();
        var expected = new ulong[experts];
        foreach (var id in host)
        {
            expected[id]++;
        }

        var summed = Enumerable.Range(0, experts).Select(e => Enumerable.Range(0, counted.Copies).Aggregate(0UL, (sum, copy) => sum + firstBuffer[copy * experts + e]));
        Assert.Equal(expected, summed);
        Assert.All(firstBuffer.Skip(counted.Copies * experts), count => Assert.Equal(0UL, count));

        launch(device.DefaultStream, ids.View.SubView(0, 0), buffers.Views, none, counted);
        Assert.Equal(expected, buffers.TokenCounts.GetAsArray1D());
        Assert.All(buffers.Counts.GetAsArray1D(), count => Assert.Equal(0UL, count));
        Assert.Equal((ulong)host.Length, buffers.Block.GetAsArray1D()[0].TotalUsed);
    }

    /// <summary>The device fold from the same state: equal to the managed engine, so exact too.</summary>
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void MeansStayExactAfterABillionBatchesOnTheDevice(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var launch = RoutingRecordKernel.Create(device);
        using var state = new LauncherState(device, experts: 2);
        state.Block.View.CopyFromCPU(new[] { new RoutingStateBlock { TotalRoutings = BillionLess1, TotalTokens = 4 * BillionLess1, RoutedSlots = 8 * BillionLess1, LoadBalanceLossSum = 2.0 * BillionLess1, Experts = 2 } });
        state.Sums.View.CopyFromCPU(new[] { 1.25 * BillionLess1, 0.75 * BillionLess1 });
        using var ids = device.Allocate1D(new[] { 0, 0, 0, 0, 0, 1, 1, 1 });
        var none = new RecordArguments { Buffer = -1 };
        var record = launch(device.DefaultStream, ids.View, state.Views,
            new RecordArguments { Experts = 2, Buffer = 0, Tokens = 4, TopK = 2, SlotsPerExpert = 100, LoadBalanceLoss = 2f, UtilizationDecay = -1f }, none);
        launch(device.DefaultStream, ids.View.SubView(0, 0), state.Views, none, record);
        device.DefaultStream.Synchronize();
        var block = state.Block.GetAsArray1D()[0];
        Assert.Equal(BillionLess1 + 1, block.TotalRoutings);
        Assert.Equal(2f, block.AverageLoadBalanceLoss);
        Assert.Equal([1.25f, 0.75f], state.Floats.GetAsArray1D());
    }

    /// <summary>
    /// The device fold stops the slots of capacity and the slots used at 2^63 − 1, as the managed engine does
    /// (CapacityStatsTests): 4,096 experts of 2^31 − 1 slots reach it in just over 2^20 steps.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void TheFoldStopsTheSlotsAtTheMostASnapshotHolds(string accelerator)
    {
        const ulong most = long.MaxValue;
        var device = TestAccelerators.Require(accelerator);
        var launch = RoutingRecordKernel.Create(device);
        using var state = new LauncherState(device, experts: 2);
        state.Block.View.CopyFromCPU(new[] { new RoutingStateBlock { TotalRoutings = 1, TotalTokens = 4, RoutedSlots = 8, TotalCapacity = most - 5, TotalUsed = most - 12, Experts = 2 } });
        using var ids = device.Allocate1D(new[] { 0, 0, 0, 0, 0, 1, 1, 1 });
        var none = new RecordArguments { Buffer = -1 };
        var arguments = new RecordArguments { Experts = 2, Tokens = 4, TopK = 2, SlotsPerExpert = int.MaxValue, UtilizationDecay = -1f };
        var first = launch(device.DefaultStream, ids.View, state.Views, arguments with { Buffer = 0 }, none);
        var second = launch(device.DefaultStream, ids.View, state.Views, arguments with { Buffer = 1 }, first);
        launch(device.DefaultStream, ids.View.SubView(0, 0), state.Views, none, second);
        device.DefaultStream.Synchronize();
        var block = state.Block.GetAsArray1D()[0];
        Assert.Equal(3UL, block.TotalRoutings);
        Assert.Equal(most, block.TotalCapacity);
        Assert.Equal(most, block.TotalUsed);
    }

    private const ulong BillionLess1 = 999_999_999;
}
