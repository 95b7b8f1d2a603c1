using ILGPU.Runtime;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;
using MoeGpuStats.Lab;
using static MoeGpuStats.Tests.Support.LoadIds;

namespace MoeGpuStats.Tests.Conformance;

/// <summary>
/// Random batches of top-k ids through the device engine and the managed engine: the counts equal
/// exactly, the floats within the fixtures' f32 tolerance.
/// </summary>
public sealed class DevicePropertyTests
{
    public static TheoryData<string, int, int, int, string> Cases
    {
        get
        {
            var data = new TheoryData<string, int, int, int, string>();
            foreach (var kind in TestAccelerators.Kinds)
            {
                data.Add(kind.Data, 1, 1, 0, "uniform");
                data.Add(kind.Data, 1, 1, 1000, "uniform");
                data.Add(kind.Data, 7, 3, 5, "uniform");
                data.Add(kind.Data, 64, 8, 4096, "skewed");
                data.Add(kind.Data, 256, 8, 131_072, "skewed");
                data.Add(kind.Data, 1024, 2, 300_000, "invalid");
                data.Add(kind.Data, 4096, 8, 262_144, "uniform");
                data.Add(kind.Data, 256, 8, 2_000_000, "hot");
                data.Add(kind.Data, 256, 8, 500_000, "runs");
                data.Add(kind.Data, 3, 1, 70_001, "runs");
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void DeviceCountsEqualManagedCounts(string accelerator, int experts, int topK, int tokensPerBatch, string load)
    {
        var device = TestAccelerators.Require(accelerator);
        var options = new RoutingStatsOptions { Experts = experts, UtilizationDecay = 0.9f, ExpertCapacity = Math.Max(1, tokensPerBatch * topK / experts) };
        var engine = new DeviceRoutingStats(device, options);   // owned and disposed by onDevice
        using var onDevice = RoutingStats.OnDevice(engine);
        using var managed = new RoutingStats(options);
        var random = new Random(HashCode.Combine(experts, topK, tokensPerBatch, load));
        var length = tokensPerBatch * topK;
        using var buffer = device.Allocate1D<int>(Math.Max(1, length));
        for (var batch = 0; batch < 3; batch++)
        {
            var ids = Ids(random, length, experts, load);
            buffer.View.SubView(0, length).CopyFromCPU(engine.Stream, ids);   // after the last record read the buffer
            onDevice.RecordRouting(buffer.View, tokensPerBatch, topK, loadBalanceLoss: 0.25f * batch, routerZLoss: 0.01f);
            managed.RecordRouting(ids, tokensPerBatch, topK, loadBalanceLoss: 0.25f * batch, routerZLoss: 0.01f);
        }

        using var snapshot = onDevice.Snapshot();
        Assert.Equal(managed.ExpertTokenCounts, snapshot.ExpertTokenCounts);
        Assert.Equal(managed.InvalidExpertIds, snapshot.InvalidExpertIds);
        Assert.Equal(managed.TotalTokens, snapshot.TotalTokens);
        Assert.Equal(managed.TokensDropped, snapshot.TokensDropped);
        Assert.Equal(managed.CapacityStats.TotalUsed, snapshot.CapacityStats.TotalUsed);
        AssertClose(managed.ExpertUtilization, snapshot.ExpertUtilization);
        AssertClose(managed.DecayedExpertUtilization, snapshot.DecayedExpertUtilization);
        AssertClose(managed.LoadVarianceHistory, snapshot.LoadVarianceHistory);
        AssertClose([managed.UtilizationCv(), managed.RecentLoadVarianceTrend(3), managed.CapacityStats.AverageUtilization, managed.RoutingEfficiency],
            [onDevice.UtilizationCv(), onDevice.RecentLoadVarianceTrend(3), snapshot.CapacityStats.AverageUtilization, snapshot.RoutingEfficiency]);
        Assert.Equal(managed.MostUtilizedExpert()?.Index, onDevice.MostUtilizedExpert()?.Index);
        Assert.Equal(managed.LeastUtilizedExpert()?.Index, onDevice.LeastUtilizedExpert()?.Index);
    }

    /// <summary>
    /// The floats equal the managed engine's to the bit, not within a tolerance: the device rounds
    /// each product before adding it as .NET and the seed do (a fused multiply-add would change last
    /// bits, and the variance trend's cancellation magnifies them).
    /// </summary>
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void DeviceFloatsEqualManagedFloatsToTheBit(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        const int experts = 97;
        var options = new RoutingStatsOptions { Experts = experts, UtilizationDecay = 0.93f, ExpertCapacity = 700 };
        var engine = new DeviceRoutingStats(device, options);   // owned and disposed by onDevice
        using var onDevice = RoutingStats.OnDevice(engine);
        using var managed = new RoutingStats(options);
        var random = new Random(5);
        const int length = 6000 * 8;
        using var buffer = device.Allocate1D<int>(length);
        for (var batch = 0; batch < 150; batch++)
        {
            var ids = Ids(random, length, experts, batch % 3 == 0 ? "skewed" : "uniform");
            var loss = (float)random.NextDouble();
            var zLoss = (float)random.NextDouble() / 7f;
            buffer.View.CopyFromCPU(engine.Stream, ids);
            onDevice.RecordRouting(buffer.View, 6000, 8, loadBalanceLoss: loss, routerZLoss: zLoss);
            managed.RecordRouting(ids, 6000, 8, loadBalanceLoss: loss, routerZLoss: zLoss);
        }

        using var snapshot = onDevice.Snapshot();
        Assert.Equal(managed.ExpertUtilization, snapshot.ExpertUtilization);
        Assert.Equal(managed.DecayedExpertUtilization, snapshot.DecayedExpertUtilization);
        Assert.Equal(managed.LoadVarianceHistory, snapshot.LoadVarianceHistory);
        Assert.Equal(
            [managed.AverageLoadBalanceLoss, managed.AverageRouterZLoss, managed.RoutingEfficiency, managed.CapacityStats.AverageUtilization, managed.CapacityStats.PeakUtilization],
            [snapshot.AverageLoadBalanceLoss, snapshot.AverageRouterZLoss, snapshot.RoutingEfficiency, snapshot.CapacityStats.AverageUtilization, snapshot.CapacityStats.PeakUtilization]);
        Assert.Equal(
            [managed.UtilizationCv(), managed.RecentLoadVarianceTrend(100), managed.RecentLoadVarianceTrend(7)],
            [onDevice.UtilizationCv(), onDevice.RecentLoadVarianceTrend(100), onDevice.RecentLoadVarianceTrend(7)]);
    }

    /// <summary>
    /// A record is folded by the next launch, or by a read before it runs: reads after any record
    /// (ids on the device or the host, a decision, no ids), twice in a row, and a reset while a
    /// record is pending all see what the managed engine sees, to the bit.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void ReadsBetweenRecordsSeeEveryRecordOnce(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        const int experts = 37;
        var options = new RoutingStatsOptions { Experts = experts, UtilizationDecay = 0.8f, ExpertCapacity = 90 };
        var engine = new DeviceRoutingStats(device, options);   // owned and disposed by onDevice
        using var onDevice = RoutingStats.OnDevice(engine);
        using var managed = new RoutingStats(options);
        using var buffer = device.Allocate1D<int>(4000);
        var random = new Random(41);
        for (var step = 0; step < 24; step++)
        {
            var ids = Ids(random, 4000, experts, step % 2 == 0 ? "skewed" : "invalid");
            var loss = step / 10f;
            // Three kinds of record in turn, so that each kind lands in both batch buffers, and now and then one with no ids.
            switch (step % 5 == 4 ? 3 : step % 3)
            {
                case 0:
                    buffer.View.CopyFromCPU(engine.Stream, ids);
                    onDevice.RecordRouting(buffer.View, 1000, 4, loadBalanceLoss: loss);
                    managed.RecordRouting(ids, 1000, 4, loadBalanceLoss: loss);
                    break;
                case 1:
                    onDevice.RecordRouting(ids, 500, 8, loadBalanceLoss: loss);
                    managed.RecordRouting(ids, 500, 8, loadBalanceLoss: loss);
                    break;
                case 2:
                    var decision = new RoutingDecision { ExpertCapacities = [.. ids.Take(experts).Select(id => Math.Abs(id) % 100)], TotalTokens = 900, TokensDropped = step, LoadBalanceLoss = loss };
                    onDevice.RecordRouting(decision);
                    managed.RecordRouting(decision);
                    break;
                default:
                    onDevice.RecordRouting(buffer.View, 0, 4, loadBalanceLoss: loss);
                    managed.RecordRouting(ids, 0, 4, loadBalanceLoss: loss);
                    break;
            }

            if (step == 13)
            {
                onDevice.Reset();
                managed.Reset();
            }

            // Reads after some records only, so that records also fold records with no read between.
            if (step % 4 != 1)
            {
                AssertSameFigures(managed, onDevice, $"step {step}");
                AssertSameFigures(managed, onDevice, $"step {step}, read again");
            }
        }
    }

    private static void AssertSameFigures(RoutingStats managed, RoutingStats onDevice, string when)
    {
        using var snapshot = onDevice.Snapshot();
        Assert.True(managed.TotalRoutings == onDevice.TotalRoutings, $"{when}: {onDevice.TotalRoutings} routings, managed {managed.TotalRoutings}");
        Assert.True(managed.ExpertTokenCounts.SequenceEqual(snapshot.ExpertTokenCounts), $"{when}: token counts differ");
        Assert.True(managed.ExpertUtilization.SequenceEqual(snapshot.ExpertUtilization), $"{when}: utilization differs");
        Assert.True(managed.DecayedExpertUtilization.SequenceEqual(snapshot.DecayedExpertUtilization), $"{when}: decayed utilization differs");
        Assert.True(managed.LoadVarianceHistory.SequenceEqual(snapshot.LoadVarianceHistory), $"{when}: variance history differs");
        Assert.Equal(
            [managed.TotalTokens, managed.TokensDropped, managed.InvalidExpertIds],
            [snapshot.TotalTokens, snapshot.TokensDropped, snapshot.InvalidExpertIds]);
        Assert.Equal(
            [managed.UtilizationCv(), managed.RecentLoadVarianceTrend(5), managed.AverageLoadBalanceLoss],
            [onDevice.UtilizationCv(), onDevice.RecentLoadVarianceTrend(5), snapshot.AverageLoadBalanceLoss]);
        Assert.Equal(managed.MostUtilizedExpert(), onDevice.MostUtilizedExpert());
    }

    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void EveryGridRuleGivesTheManagedCounts(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        const int experts = 300;
        var options = new RoutingStatsOptions { Experts = experts };
        var ids = Ids(new Random(11), 777_777, experts, "invalid");
        using var managed = new RoutingStats(options);
        managed.RecordRouting(ids, ids.Length, 1);
        using var buffer = device.Allocate1D(ids);
        foreach (var (idsPerThread, idsPerBin) in new[] { (1, 0), (3, 0), (1, 16), (64, 16), (100_000, 0), (1, 100_000) })
        {
            using var onDevice = new DeviceRoutingStats(device, options, stream: null, new RecordKernelPolicy { IdsPerThread = idsPerThread, IdsPerBin = idsPerBin });
            onDevice.RecordRouting(buffer.View, ids.Length, 1);
            using var snapshot = onDevice.Snapshot();
            Assert.True(managed.ExpertTokenCounts.SequenceEqual(snapshot.ExpertTokenCounts), $"{idsPerThread} ids per thread, {idsPerBin} per bin: counts differ");
            Assert.Equal(managed.InvalidExpertIds, snapshot.InvalidExpertIds);
        }

        Assert.Equal(nameof(RecordKernelPolicy.IdsPerThread), Assert.Throws<ArgumentOutOfRangeException>(() => new RecordKernelPolicy { IdsPerThread = 0 }).ParamName);
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => RecordKernelPolicy.For(device) with { IdsPerBin = -1 });
        Assert.Equal((nameof(RecordKernelPolicy.IdsPerBin), "IdsPerBin is -1; give 0 (no bound) or more. (Parameter 'IdsPerBin')"), (negative.ParamName, negative.Message));
    }

    /// <summary>The usual kinds and a CPU accelerator whose records run on several groups.</summary>
    public static TheoryData<string> MultiGroupKinds => [.. TestAccelerators.Kinds.Select(row => row.Data).Append(TestAccelerators.CpuWithFourMultiprocessors)];

    /// <summary>
    /// Batches of changing size through engines whose groups flush into one copy each, a few groups
    /// per copy, or always one copy, at expert counts whose buffer holds 16, 13 and 2 copies: the state
    /// equals the managed engine's, counts and floats alike.
    /// </summary>
    [Theory]
    [MemberData(nameof(MultiGroupKinds))]
    public void EveryFlushSpreadGivesTheManagedState(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var random = new Random(17);
        foreach (var experts in new[] { 61, 300, 1500 })
        {
            var options = new RoutingStatsOptions { Experts = experts, UtilizationDecay = 0.9f, ExpertCapacity = 8 };
            foreach (var groupsPerCopy in new[] { 1, 3, int.MaxValue })
            {
                var engine = new DeviceRoutingStats(device, options, stream: null, new RecordKernelPolicy { IdsPerThread = 1, GroupsPerCopy = groupsPerCopy, IdsPerBin = 0 });
                using var onDevice = RoutingStats.OnDevice(engine);
                using var managed = new RoutingStats(options);
                foreach (var length in new[] { 9_000, 1, 20_000, 700, 5_000 })
                {
                    var ids = Ids(random, length, experts, "skewed");
                    using var buffer = device.Allocate1D(ids);
                    onDevice.RecordRouting(buffer.View, length, 1);
                    managed.RecordRouting(ids, length, 1);
                    engine.Stream.Synchronize();
                }

                using var snapshot = onDevice.Snapshot();
                var context = $"E = {experts}, {groupsPerCopy} groups per copy";
                Assert.True(managed.ExpertTokenCounts.SequenceEqual(snapshot.ExpertTokenCounts), $"{context}: counts differ");
                Assert.Equal((managed.TokensDropped, managed.TotalTokens), (snapshot.TokensDropped, snapshot.TotalTokens));
                Assert.Equal(
                    [managed.UtilizationCv(), managed.RecentLoadVarianceTrend(5), managed.RoutingEfficiency],
                    [onDevice.UtilizationCv(), onDevice.RecentLoadVarianceTrend(5), snapshot.RoutingEfficiency]);
            }
        }

        Assert.Equal(nameof(RecordKernelPolicy.GroupsPerCopy), Assert.Throws<ArgumentOutOfRangeException>(() => new RecordKernelPolicy { GroupsPerCopy = 0 }).ParamName);
    }

    /// <summary>Every accelerator with the library's countings and the device check's <see cref="CandidateCounting"/>s, by name.</summary>
    public static TheoryData<string, string> Countings
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var kind in TestAccelerators.Kinds.Select(row => row.Data).Append(TestAccelerators.CpuWithWarpsOf32))
            {
                foreach (var counting in Enum.GetNames<HistogramCounting>().Concat(CandidateCounting.All.Select(c => c.Name)))
                {
                    data.Add(kind, counting);
                }
            }

            return data;
        }
    }

    /// <summary>Whether <paramref name="device"/> runs <paramref name="counting"/> (a <see cref="HistogramCounting"/> or a <see cref="CandidateCounting"/>), and if not, why.</summary>
    private static bool Supports(Accelerator device, string counting, out string? reason) =>
        Enum.TryParse<HistogramCounting>(counting, out var library)
            ? RoutingRecordKernel.Supports(device, library, out reason)
            : CandidateCounting.All.Single(c => c.Name == counting).Supports(device, out reason);

    /// <summary>A device engine whose record kernel has <paramref name="counting"/> and the grid rule of <paramref name="idsPerThread"/>.</summary>
    private static DeviceRoutingStats Engine(Accelerator device, RoutingStatsOptions options, string counting, int idsPerThread)
    {
        var policy = new RecordKernelPolicy { IdsPerThread = idsPerThread };
        return Enum.TryParse<HistogramCounting>(counting, out var library)
            ? new DeviceRoutingStats(device, options, stream: null, policy with { Counting = library })
            : new DeviceRoutingStats(device, options, stream: null, a => CandidateCounting.All.Single(c => c.Name == counting).Create(a, policy));
    }

    /// <summary>
    /// Every counting gives the managed counts on loads that make lanes share ids (hot, collapsed,
    /// long runs), with ids out of range (−1 among them), at lengths that end inside a warp, and with grids from
    /// one group to many. Where the accelerator cannot run a counting, creating the engine says why.
    /// </summary>
    [Theory]
    [MemberData(nameof(Countings))]
    public void EveryHistogramCountingGivesTheManagedCounts(string accelerator, string counting)
    {
        var device = TestAccelerators.Require(accelerator);
        const int experts = 61;
        var options = new RoutingStatsOptions { Experts = experts };
        if (device.AcceleratorType == AcceleratorType.OpenCL && counting != nameof(HistogramCounting.ThreadRuns))
        {
            Assert.False(Supports(device, counting, out var reason));
            var refused = Assert.Throws<NotSupportedException>(() => Engine(device, options, counting, 16));
            Assert.Equal(reason, refused.Message);
            Assert.Contains("OpenCL", refused.Message);
            return;
        }

        // The CPU accelerator runs one group, and emulates a warp's match with a shuffle per lane
        // (slow): lengths there reach the unrolled loop and the partial last warp; a GPU also gets
        // grids from one group to many.
        (int Length, int IdsPerThread)[] runs = device.AcceleratorType == AcceleratorType.CPU
            ? [(1, 16), (37, 16), (1000, 16), (4099, 16)]
            : [(1, 16), (37, 1), (4099, 3), (100_003, 1), (100_003, 16), (100_003, 100_000)];
        var random = new Random(23);
        foreach (var load in new[] { "uniform", "hot", "collapsed", "runs", "invalid", "minus one" })
        {
            foreach (var (length, idsPerThread) in runs)
            {
                var ids = Ids(random, length, experts, load);
                using var managed = new RoutingStats(options);
                managed.RecordRouting(ids, length, 1);
                using var buffer = device.Allocate1D(ids);
                using var onDevice = Engine(device, options, counting, idsPerThread);
                onDevice.RecordRouting(buffer.View, length, 1);
                using var snapshot = onDevice.Snapshot();
                Assert.True(managed.ExpertTokenCounts.SequenceEqual(snapshot.ExpertTokenCounts), $"{load}, {length} ids, {idsPerThread} per thread: counts differ");
                Assert.True(managed.InvalidExpertIds == snapshot.InvalidExpertIds, $"{load}, {length} ids, {idsPerThread} per thread: invalid {managed.InvalidExpertIds} managed, {snapshot.InvalidExpertIds} device");
            }
        }
    }

    private static void AssertClose(IReadOnlyList<float> expected, IReadOnlyList<float> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            var tolerance = Math.Max(1e-6, 1e-5 * Math.Abs(expected[i]));
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"[{i}]: managed {expected[i]:R}, device {actual[i]:R}");
        }
    }
}
