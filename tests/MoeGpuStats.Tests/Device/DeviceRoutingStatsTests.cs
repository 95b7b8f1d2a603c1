using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using Microsoft.Extensions.Logging;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// The device engine (<see cref="DeviceRoutingStats"/>, alone and behind <see cref="RoutingStats.OnDevice(DeviceRoutingStats)"/>):
/// bad input refused with the state unchanged, expert count changes and reset as on the managed engine,
/// records that return before the device finishes, the launch-bounds warning, and (in
/// DeviceRoutingStatsTests.ThreadSafety.cs) records, reads and snapshots from several threads at once.
/// </summary>
public sealed partial class DeviceRoutingStatsTests
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

    /// <summary>The device engine alone refuses each bad decision as the facade does, naming its own argument, with the state unchanged.</summary>
    [Theory]
    [MemberData(nameof(Decisions.BadDecisions), MemberType = typeof(Decisions))]
    public void ABadDecisionLeavesTheDeviceEngineUnchanged(string kind)
    {
        var device = TestAccelerators.Require("cpu");
        using var stats = new DeviceRoutingStats(device, new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 2, 0, 3], TotalTokens = 6, LoadBalanceLoss = 0.5f });
        var before = JsonSerializer.Serialize(stats.Snapshot());
        var (decision, refusal) = Decisions.Bad(kind);

        var error = Assert.ThrowsAny<ArgumentException>(() => stats.RecordRouting(decision));

        Assert.Equal("decision", error.ParamName);
        Assert.StartsWith(refusal, error.Message);
        Assert.Equal(before, JsonSerializer.Serialize(stats.Snapshot()));
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
        Assert.StartsWith($"topKExpertIds lives on another '{device.Name}' accelerator than this engine's", error.Message);
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
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new DeviceRoutingStats(device, new RoutingStatsOptions { Experts = 5000 }));
        Assert.Equal("Experts", error.ParamName);
        Assert.Equal("Experts is 5000; the device engine holds 1 to 4,096. (Parameter 'Experts')", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeviceRoutingStats(device, new RoutingStatsOptions { Experts = RoutingStatsOptions.MaxDeviceExperts + 1 }));
        using var stats = new DeviceRoutingStats(device);
        Assert.Throws<ArgumentException>(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = new int[RoutingStatsOptions.MaxDeviceExperts + 1] }));
    }

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

    /// <summary>
    /// A reset right after a record, which is then pending (counted into a batch buffer on the device, not yet folded), drops
    /// that record: the records after the reset count from nothing, in either batch buffer, as on the managed engine reset at the
    /// same point. Read right after the reset, and after a first record of no tokens or of invalid ids only, the state is the
    /// managed one's too.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void AResetDropsTheRecordStillPending(string accelerator)
    {
        var options = new RoutingStatsOptions { Experts = 5, ExpertCapacity = 3, UtilizationDecay = 0.5f };
        using var device = new DeviceRoutingStats(TestAccelerators.Require(accelerator), options);
        using var managed = new RoutingStats(options);
        var random = new Random(5);
        int[] Ids() => [.. Enumerable.Range(0, 8 * 2).Select(_ => random.Next(-1, 6))];
        void Record(int[] ids, float loss)
        {
            device.RecordRouting(ids, ids.Length / 2, 2, loadBalanceLoss: loss);
            managed.RecordRouting(ids, ids.Length / 2, 2, loadBalanceLoss: loss);
        }

        void AssertSameState()
        {
            using var snapshot = device.Snapshot();
            Assert.Equal(JsonSerializer.Serialize(managed), JsonSerializer.Serialize(snapshot));
        }

        int[][] firstAfterReset = [[], [7, -2, 5, 9], Ids()];
        for (var round = 0; round < 6; round++)
        {
            // Round r makes r + 1 records and resets with the last pending: in one batch buffer, then the other.
            for (var r = 0; r <= round; r++)
            {
                Record(Ids(), 0.25f * r);
            }

            device.Reset();
            managed.Reset();
            AssertSameState();
            Assert.Empty(device.ReadTokenCounts());
            Assert.Equal(0f, device.UtilizationCv());

            Record(firstAfterReset[round % firstAfterReset.Length], 0.5f);
            Record(Ids(), 1f);
            AssertSameState();
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

    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void TheEngineSaysWhetherItsRecordKernelHasLaunchBoundsAndWarnsOnlyWhereCudaRunsItWithout(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var logger = new RecordingLogger();
        using var engine = new DeviceRoutingStats(device, new RoutingStatsOptions { Experts = 4 }, stream: null, logger);
        var onCuda = device.AcceleratorType == AcceleratorType.Cuda;
        Assert.Equal(onCuda && CudaLaunchBounds.Supported, engine.RecordKernelHasLaunchBounds);
        var warnings = logger.Entries.Where(entry => entry.Id.Name == "LaunchBoundsUnavailable").ToArray();
        Assert.Equal(onCuda && !engine.RecordKernelHasLaunchBounds ? 1 : 0, warnings.Length);
        Assert.All(warnings, entry => Assert.Equal((2, LogLevel.Warning), (entry.Id.Id, entry.Level)));
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

    /// <summary>Keeps every entry logged to it.</summary>
    private sealed class RecordingLogger : ILogger
    {
        public List<(EventId Id, LogLevel Level, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((eventId, logLevel, formatter(state, exception)));
    }
}
