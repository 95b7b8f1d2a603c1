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
        var name = Encoding.UTF8.GetBytes(accelerator + "\0");
        long handle;
        fixed (byte* p = name)
        {
            Assert.Equal(Ok, ((delegate* unmanaged<byte*, int, int, long*, int>)&NativeApi.Create)(p, 4, 0, &handle));
        }

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
}
