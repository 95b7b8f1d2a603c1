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
            long handle;
            fixed (byte* p = name)
            {
                Refused(((delegate* unmanaged<byte*, int, int, long*, int>)&NativeApi.Create)(p, 4, 0, &handle), InvalidArgument, $"accelerator = \"{echoed}:");
            }
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
