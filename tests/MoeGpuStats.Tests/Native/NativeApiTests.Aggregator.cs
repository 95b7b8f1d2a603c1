using System.Runtime.InteropServices;
using System.Text;
using MoeGpuStats.Native;

namespace MoeGpuStats.Tests.Native;

/// <summary><see cref="NativeApi"/>'s aggregator entry points (<c>moegs_*</c>), called in process as the model's are.</summary>
public sealed unsafe partial class NativeApiTests
{
    /// <summary>
    /// moegs_expert_counts and moegs_expert_utilization before the first record and after a reset: the
    /// aggregator's `experts` values, zeros, and a capacity below the experts refused, though the
    /// per-expert lists are empty there.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void PerExpertValuesBeforeARecordAreZerosAndTheCapacityIsChecked(string accelerator)
    {
        var handle = CreateAggregator(accelerator, 4);
        try
        {
            for (var pass = 0; pass < 2; pass++)
            {
                var counts = new ulong[] { 77, 77, 77, 77, 77 };
                var utilization = new float[] { 7, 7, 7, 7, 7 };
                fixed (ulong* c = counts)
                fixed (float* u = utilization)
                {
                    Assert.Equal(Ok, ((delegate* unmanaged<long, ulong*, int, int>)&NativeApi.ExpertCounts)(handle, c, 4));
                    Assert.Equal(Ok, ((delegate* unmanaged<long, float*, int, int>)&NativeApi.ExpertUtilization)(handle, u, 4));
                    Assert.Equal([0ul, 0, 0, 0, 77], counts);
                    Assert.Equal([0f, 0, 0, 0, 7], utilization);
                    Refused(((delegate* unmanaged<long, ulong*, int, int>)&NativeApi.ExpertCounts)(handle, c, 3), InvalidArgument, "capacity = 3", "capacity >= 4");
                    Refused(((delegate* unmanaged<long, float*, int, int>)&NativeApi.ExpertUtilization)(handle, u, 0), InvalidArgument, "capacity = 0", "capacity >= 4");
                }

                int[] ids = [3, 3];
                fixed (int* i = ids)
                {
                    Assert.Equal(Ok, ((delegate* unmanaged<long, IntPtr, long, int, int, float, float, IntPtr, int>)&NativeApi.Record)(handle, (IntPtr)i, 2, 1, 2, 0f, 0f, 0));
                }

                Assert.Equal(Ok, Call(&NativeApi.Reset, handle));
            }
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.Destroy, handle));
        }
    }

    /// <summary>
    /// The C checks draw each limit where moegs.h puts it: the largest expert counts are taken, and a refusal at
    /// the edge (one id from NULL, one nanosecond below 0, exactly 2^31 - 1 ids a record) names what is wrong.
    /// </summary>
    [Fact]
    public void TheAggregatorsChecksHoldAtTheirEdges()
    {
        foreach (var (accelerator, experts) in new[] { ("cpu", RoutingStatsOptions.MaxDeviceExperts), ("managed", RoutingStatsOptions.MaxExperts) })
        {
            var largest = CreateAggregator(accelerator, experts);
            Assert.Equal(Ok, Call(&NativeApi.Destroy, largest));
        }

        var handle = CreateAggregator("managed", 4);
        try
        {
            var record = (delegate* unmanaged<long, IntPtr, long, int, int, float, float, IntPtr, int>)&NativeApi.Record;
            int[] ids = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1];
            fixed (int* i = ids)
            {
                Refused(record(handle, 0, 1, 1, 1, 0f, 0f, 0), InvalidArgument, "ids is NULL with length = 1");
                Refused(record(handle, (IntPtr)i, 10, int.MaxValue, 1, 0f, 0f, 0), InvalidArgument, "length = 10: the ids hold fewer than tokens * top_k = 2147483647 * 1");
            }

            Refused(((delegate* unmanaged<long, long, int>)&NativeApi.RecordLatency)(handle, -1), InvalidArgument, "nanoseconds = -1:");
            var counts = new ulong[4];
            fixed (ulong* c = counts)
            {
                Assert.Equal(Ok, ((delegate* unmanaged<long, ulong*, int, int>)&NativeApi.ExpertCounts)(handle, c, 4));
            }

            Assert.Equal([0ul, 0, 0, 0], counts);
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.Destroy, handle));
        }
    }

    /// <summary>An accelerator name is echoed whole up to 64 characters, and cut with "..." past them.</summary>
    [Fact]
    public void AnUnknownAcceleratorsNameIsEchoedWholeUpTo64Characters()
    {
        foreach (var (length, echoed) in new[] { (64, new string('x', 64) + "\""), (65, new string('x', 64) + "...\"") })
        {
            var name = Encoding.UTF8.GetBytes(new string('x', length) + "\0");
            long handle = 42;
            fixed (byte* p = name)
            {
                Refused(((delegate* unmanaged<byte*, int, int, long*, int>)&NativeApi.Create)(p, 4, 0, &handle), InvalidArgument, $"accelerator = \"{echoed}:");
            }

            Assert.Equal(0, handle); // a refused moegs_create writes 0, not what the caller had there
        }
    }

    /// <summary>
    /// An aggregator recorded through the C API reads as a <see cref="RoutingStats"/> recorded directly, each field of
    /// moegs_snapshot compared with the property it is named for (not through NativeSnapshot.From, which both sides
    /// would share): the losses each in their own field, P95 and P99 apart, the most and the least utilized expert, the
    /// capacity's peak and average; latencies kept to the nearest 100 ns (50 rounds up); moegs_expert_counts and
    /// moegs_expert_utilization write exactly `experts` values, the first to the last, into a larger dst.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void AnAggregatorsSnapshotIsTheDirectStatisticsFieldByField(string accelerator)
    {
        var options = new RoutingStatsOptions { Experts = Experts, ExpertCapacity = 6 };
        using var direct = new RoutingStats(options);
        var name = Encoding.UTF8.GetBytes(accelerator + "\0");
        long handle;
        fixed (byte* p = name)
        {
            Assert.Equal(Ok, ((delegate* unmanaged<byte*, int, int, long*, int>)&NativeApi.Create)(p, Experts, 6, &handle));
        }

        try
        {
            var snapshot = (delegate* unmanaged<long, NativeSnapshot*, int>)&NativeApi.Snapshot;
            NativeSnapshot fresh;
            Assert.Equal(Ok, snapshot(handle, &fresh));
            AssertSnapshot(direct, fresh);

            var rng = new Random(23);
            var record = (delegate* unmanaged<long, IntPtr, long, int, int, float, float, IntPtr, int>)&NativeApi.Record;
            for (var batch = 0; batch < 6; batch++)
            {
                // Skewed towards the low experts, so that the most and the least utilized expert, P95 and P99, peak and average differ.
                var ids = Enumerable.Range(0, Tokens * TopK).Select(_ => rng.Next(-1, 3 + rng.Next(Experts))).ToArray();
                var (loss, zLoss) = (0.25f + (0.125f * batch), 0.01f * (batch + 1));
                fixed (int* i = ids)
                {
                    Assert.Equal(Ok, record(handle, (IntPtr)i, ids.Length, Tokens, TopK, loss, zLoss, 0));
                    if (accelerator == "managed")
                    {
                        // A longer buffer than a record reads (length past 2^31 - 1) is read only as far as tokens * top_k.
                        Assert.Equal(Ok, record(handle, (IntPtr)i, (1L << 31) + 7, Tokens, TopK, loss, zLoss, 0));
                        direct.RecordRouting(ids, Tokens, TopK, loss, zLoss);
                    }
                }

                direct.RecordRouting(ids, Tokens, TopK, loss, zLoss);
            }

            var latency = (delegate* unmanaged<long, long, int>)&NativeApi.RecordLatency;
            for (var k = 0; k < 100; k++)
            {
                var ns = (100L * k) + (k % 3 == 0 ? 50 : 49);
                Assert.Equal(Ok, latency(handle, ns));
                direct.RecordRoutingLatency(TimeSpan.FromTicks((long)Math.Round(ns / 100.0, MidpointRounding.AwayFromZero)));
            }

            NativeSnapshot read;
            Assert.Equal(Ok, snapshot(handle, &read));
            AssertSnapshot(direct, read);
            Assert.True(read.P95LatencyMs != read.P99LatencyMs && read.MostUtilized != read.LeastUtilized && read.AverageLoadBalanceLoss != read.AverageRouterZLoss, "the snapshot's check reads figures that coincide");
            Assert.True(read.CapacityPeakUtilization != read.CapacityAverageUtilization && read.SlotsDropped > 0, "the capacity's figures coincide");

            var counts = Enumerable.Repeat(77ul, Experts + 2).ToArray();
            var utilization = Enumerable.Repeat(7f, Experts + 2).ToArray();
            fixed (ulong* c = counts)
            fixed (float* u = utilization)
            {
                Assert.Equal(Ok, ((delegate* unmanaged<long, ulong*, int, int>)&NativeApi.ExpertCounts)(handle, c, Experts + 2));
                Assert.Equal(Ok, ((delegate* unmanaged<long, float*, int, int>)&NativeApi.ExpertUtilization)(handle, u, Experts + 2));
            }

            // An aggregator's handle given to a model's call: named as an aggregator's, and the model's creator named.
            fixed (ulong* c = counts)
            {
                Refused(((delegate* unmanaged<long, ulong*, int, int>)&NativeApi.ModelWindowLoad)(handle, c, Experts + 2), InvalidHandle, $"handle {handle} is not a live model (it is a live aggregator's; give the handle moegs_model_create returned).");
            }

            Assert.Equal([.. direct.ExpertTokenCounts, 77ul, 77ul], counts);
            Assert.Equal([.. direct.ExpertUtilization, 7f, 7f], utilization);
            Assert.True(counts[Experts - 1] > 0, "the last expert's count is 0");

            AssertAcceleratorNamed(&NativeApi.Accelerator, handle, accelerator, "aggregator");
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.Destroy, handle));
        }
    }

    /// <summary>Each field of <paramref name="actual"/> is the property of <paramref name="expected"/> it is named for.</summary>
    private static void AssertSnapshot(RoutingStats expected, NativeSnapshot actual)
    {
        var (capacity, latency) = (expected.CapacityStats, expected.RoutingLatencyStats);
        var (most, least) = (expected.MostUtilizedExpert(), expected.LeastUtilizedExpert());
        Assert.Equal(
            (expected.TotalRoutings, expected.TotalTokens, expected.TokensDropped, expected.RoutedSlots, expected.SlotsDropped, expected.InvalidExpertIds),
            (actual.TotalRoutings, actual.TotalTokens, actual.TokensDropped, actual.RoutedSlots, actual.SlotsDropped, actual.InvalidExpertIds));
        Assert.Equal(
            (capacity.CapacityExceededCount, capacity.TotalCapacity, capacity.TotalUsed, capacity.AverageUtilization, capacity.PeakUtilization),
            (actual.CapacityExceededCount, actual.TotalCapacity, actual.TotalUsed, actual.CapacityAverageUtilization, actual.CapacityPeakUtilization));
        Assert.Equal(
            (latency.TotalMeasurements, latency.AverageLatency(), latency.P95Latency(), latency.P99Latency()),
            (actual.LatencyMeasurements, actual.AverageLatencyMs, actual.P95LatencyMs, actual.P99LatencyMs));
        Assert.Equal(
            (expected.AverageLoadBalanceLoss, expected.AverageRouterZLoss, expected.RoutingEfficiency, expected.UtilizationCv(), expected.RecentLoadVarianceTrend(100)),
            (actual.AverageLoadBalanceLoss, actual.AverageRouterZLoss, actual.RoutingEfficiency, actual.UtilizationCv, actual.LoadVarianceTrend100));
        Assert.Equal(
            (most?.Index ?? -1, most?.Utilization ?? 0f, least?.Index ?? -1, least?.Utilization ?? 0f),
            (actual.MostUtilized, actual.MostUtilization, actual.LeastUtilized, actual.LeastUtilization));
        Assert.Equal((expected.ExpertUtilization.Count, expected.LoadVarianceHistory.Count), (actual.Experts, actual.LoadVarianceHistoryLength));
    }

    /// <summary>
    /// A call that finds its handle locked by a record and the handle destroyed once it has the lock says the handle is
    /// not live (as after the destroy), on an aggregator and a model alike: it neither runs on the freed statistics nor
    /// reports what they throw.
    /// </summary>
    [Fact]
    public void ACallWaitingWhileItsHandleIsDestroyedFindsItNotLive()
    {
        var aggregator = CreateAggregator("managed");
        var model = Create("managed", Layers, Experts, 0, Window, -1f);
        int[] ids = [.. Enumerable.Range(0, Layers * Tokens * TopK).Select(i => i % Experts)];
        foreach (var (handle, kind, gate) in new[] { (aggregator, "aggregator", NativeApi.Handles[aggregator].Gate), (model, "model", NativeApi.Models[model].Gate) })
        {
            var status = -1;
            string? message = null;
            var waiting = new Thread(() =>
            {
                fixed (int* i = ids)
                {
                    status = kind == "model"
                        ? RecordIds(handle, (IntPtr)i, 0, Layers, Tokens, TopK, 0, 0, 0, 0, 0)
                        : ((delegate* unmanaged<long, IntPtr, long, int, int, float, float, IntPtr, int>)&NativeApi.Record)(handle, (IntPtr)i, Tokens * TopK, Tokens, TopK, 0f, 0f, 0);
                }

                message = Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)&NativeApi.LastError)());
            });
            using (gate.EnterScope())
            {
                waiting.Start();
                var deadline = DateTime.UtcNow + Patience.GoAhead;
                while ((waiting.ThreadState & ThreadState.WaitSleepJoin) == 0 && DateTime.UtcNow < deadline)
                {
                    Thread.Sleep(1);
                }

                Assert.True((waiting.ThreadState & ThreadState.WaitSleepJoin) != 0, "the record never waited for the lock");
                // This thread holds the lock the destroy takes (it is reentrant): the handle is freed before the record runs.
                Assert.Equal(Ok, Call(kind == "model" ? &NativeApi.ModelDestroy : &NativeApi.Destroy, handle));
            }

            waiting.Join();
            Assert.True(status == InvalidHandle, $"status {status}: {message}");
            Assert.Equal($"handle {handle} is not a live {kind} (never created, or destroyed).", message);
        }
    }

    /// <summary>An aggregator of <paramref name="experts"/> experts on <paramref name="accelerator"/> (moegs_create, no capacity), which must be made.</summary>
    private static long CreateAggregator(string accelerator, int experts = Experts)
    {
        var name = Encoding.UTF8.GetBytes(accelerator + "\0");
        long handle;
        fixed (byte* p = name)
        {
            var status = ((delegate* unmanaged<byte*, int, int, long*, int>)&NativeApi.Create)(p, experts, 0, &handle);
            Assert.True(status == Ok, Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)&NativeApi.LastError)()));
        }

        return handle;
    }
}
