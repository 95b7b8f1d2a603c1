using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Device;

/// <summary>Bad input to the device engine: a clear exception and the state unchanged.</summary>
public sealed class DeviceBadInputTests
{
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void AShortViewOrBadTopKLeavesTheStateUnchanged(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        using var stats = new DeviceRoutingStats(device, new RoutingStatsOptions { Experts = 4 });
        using var ids = device.Allocate1D([0, 1, 2, 3, 3, 3]);
        stats.RecordRouting(ids.View, tokens: 3, topK: 2);
        var before = JsonSerializer.Serialize(stats.Snapshot());

        var shortView = Assert.Throws<ArgumentException>(() => stats.RecordRouting(ids.View, tokens: 4, topK: 2));
        Assert.Equal("topKExpertIds", shortView.ParamName);
        Assert.Contains("4 * 2 = 8", shortView.Message);
        Assert.Equal("topK", Assert.Throws<ArgumentOutOfRangeException>(() => stats.RecordRouting(ids.View, tokens: 3, topK: 0)).ParamName);
        Assert.ThrowsAny<ArgumentException>(() => stats.RecordRouting(ids.View, tokens: 3, topK: 2, tokensDropped: 4));
        Assert.ThrowsAny<ArgumentException>(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = [] }));

        Assert.Equal(before, JsonSerializer.Serialize(stats.Snapshot()));
    }

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
        Assert.Equal(("arguments", 2), (buffer.ParamName, buffer.ActualValue));
        var pendingBuffer = Assert.Throws<ArgumentOutOfRangeException>(() => launch(device.DefaultStream, ids.View, state, none, new RecordArguments { Experts = 4, Buffer = -2 }));
        Assert.Equal(("pending", -2), (pendingBuffer.ParamName, pendingBuffer.ActualValue));
        var experts = Assert.Throws<ArgumentOutOfRangeException>(() => launch(device.DefaultStream, ids.View, state, new RecordArguments { Experts = RoutingStateLayout.MaxExperts + 1, Buffer = 0 }, none));
        Assert.Equal(RoutingStateLayout.MaxExperts + 1, experts.ActualValue);
        var shortState = Assert.Throws<ArgumentException>(() => launch(device.DefaultStream, ids.View, state, new RecordArguments { Experts = 9, Buffer = 0 }, none));
        Assert.Equal("state", shortState.ParamName);

        var record = launch(device.DefaultStream, ids.View, state, new RecordArguments { Experts = 8, Buffer = 1, Tokens = 3, TopK = 1, SlotsPerExpert = 100, UtilizationDecay = -1f }, none);
        Assert.Equal((1, 1), (record.Buffer, record.Copies));
        Assert.Equal([1UL, 1UL, 1UL, 0UL], buffers.Counts.GetAsArray1D().Skip(RoutingStateLayout.BufferLength).Take(4));

        // A pending record claiming more copies than its buffer holds would make the fold read past it.
        foreach (var copies in new[] { 0, RoutingStateLayout.MaxCopies + 1 })
        {
            var badCopies = Assert.Throws<ArgumentOutOfRangeException>(() => launch(device.DefaultStream, ids.View, state, none, record with { Copies = copies }));
            Assert.Equal(("pending", copies), (badCopies.ParamName, badCopies.ActualValue));
        }

        // At the most experts a buffer holds fewer copies than the most: one more is refused too.
        using var wide = new LauncherState(device, RoutingStateLayout.MaxExperts);
        var tooMany = RoutingStateLayout.BufferLength / RoutingStateLayout.MaxExperts + 1;
        var wideCopies = Assert.Throws<ArgumentOutOfRangeException>(
            () => launch(device.DefaultStream, ids.View, wide.Views, none, record with { Experts = RoutingStateLayout.MaxExperts, Copies = tooMany }));
        Assert.Equal(("pending", tooMany), (wideCopies.ParamName, wideCopies.ActualValue));

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

    [Fact]
    public void AViewFromAnotherAcceleratorIsRejected()
    {
        var device = TestAccelerators.Require("cpu");
        using var otherContext = Context.Create(builder => builder.Default());
        using var other = otherContext.CreateCPUAccelerator(0);
        using var foreign = other.Allocate1D([0, 1]);
        using var stats = new DeviceRoutingStats(device, new RoutingStatsOptions { Experts = 2 });

        var error = Assert.Throws<ArgumentException>(() => stats.RecordRouting(foreign.View, tokens: 2, topK: 1));

        Assert.Equal("topKExpertIds", error.ParamName);
        Assert.Equal(0UL, stats.Snapshot().TotalRoutings);
    }

    [Fact]
    public void ADisposedEngineRefusesWork()
    {
        var device = TestAccelerators.Require("cpu");
        var stats = new DeviceRoutingStats(device, new RoutingStatsOptions { Experts = 2 });
        stats.Dispose();
        Assert.Throws<ObjectDisposedException>(() => stats.RecordRouting([0, 1], tokens: 2, topK: 1));
        Assert.Throws<ObjectDisposedException>(() => stats.Snapshot());
    }

    [Fact]
    public void TooManyExpertsAreRejected()
    {
        var device = TestAccelerators.Require("cpu");
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeviceRoutingStats(device, new RoutingStatsOptions { Experts = RoutingStatsOptions.MaxDeviceExperts + 1 }));
        using var stats = new DeviceRoutingStats(device);
        Assert.Throws<ArgumentException>(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = new int[RoutingStatsOptions.MaxDeviceExperts + 1] }));
    }

    [Fact]
    public void AnImpossibleAllocationSaysHowMuchWasAskedFor()
    {
        var device = TestAccelerators.Require("cpu");
        var error = Assert.Throws<InsufficientMemoryException>(() => DeviceMemory.Allocate<ulong>(device, 1L << 50, "a test"));
        Assert.Contains("9,007,199,254,740,992 bytes", error.Message);
        Assert.Contains("a test", error.Message);
    }
}
