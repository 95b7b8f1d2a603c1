using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;
using MoeGpuStats.Native;

namespace MoeGpuStats.Tests.Native;

/// <summary>
/// On "opencl" the C API reads the caller's cl_mem on a command queue of its own, which the caller cannot order its
/// writes against: a record must have read the buffer when it returns, so that the caller may write the next step
/// into it, as moegs.h promises of a record ("so the buffer can be reused").
/// </summary>
public sealed unsafe partial class NativeApiTests
{
    [Fact]
    public void OnOpenClACallersBufferMayBeRewrittenOnceARecordReturns()
    {
        var accelerator = TestAccelerators.Require("opencl");
        const int steps = 40, tokens = 256, topK = 2;
        var ids = new int[Layers * tokens * topK];
        using var buffer = accelerator.Allocate1D<int>(ids.Length);
        var model = Create("opencl", Layers, Experts, 0, 0, -1f);
        var reference = Create("managed", Layers, Experts, 0, 0, -1f);
        var aggregator = CreateAggregator("opencl");
        var aggregatorReference = CreateAggregator("managed");
        try
        {
            var rng = new Random(7);
            for (var step = 0; step < steps; step++)
            {
                // Every other step leans on three experts, so that a step read after its buffer was rewritten counts differently.
                for (var i = 0; i < ids.Length; i++)
                {
                    ids[i] = step % 2 == 0 ? rng.Next(-1, Experts) : rng.Next(3);
                }

                // The caller's write, on its own queue, finished before the record: what a producer does each step.
                buffer.View.CopyFromCPU(ids);
                accelerator.Synchronize();
                Assert.Equal(Ok, RecordIds(model, buffer.NativePtr, 0, Layers, tokens, topK, 0, 0, 0, 0, 0));
                Assert.Equal(Ok, Record(reference, ids, Layers, tokens, topK, 0, null, null, null));
                Assert.Equal(Ok, ((delegate* unmanaged<long, IntPtr, long, int, int, float, float, IntPtr, int>)&NativeApi.Record)(
                    aggregator, buffer.NativePtr, tokens * topK, tokens, topK, 0f, 0f, 0));
                fixed (int* host = ids)
                {
                    Assert.Equal(Ok, ((delegate* unmanaged<long, IntPtr, long, int, int, float, float, IntPtr, int>)&NativeApi.Record)(
                        aggregatorReference, (IntPtr)host, tokens * topK, tokens, topK, 0f, 0f, 0));
                }
            }

            Assert.Equal(WindowLoad(reference), WindowLoad(model));
            Assert.Equal(AggregatorCounts(aggregatorReference), AggregatorCounts(aggregator));
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, model));
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, reference));
            Assert.Equal(Ok, Call(&NativeApi.Destroy, aggregator));
            Assert.Equal(Ok, Call(&NativeApi.Destroy, aggregatorReference));
        }
    }

    /// <summary>
    /// An OpenCL error reaches a C caller by its code, with what every pointer must be (ILGPU's exception says
    /// "Exception of type 'CLException' was thrown" alone). Not driven through a record with a host pointer: PoCL reports
    /// an error whose code depends on the bytes there (CL_MISALIGNED_SUB_BUFFER_OFFSET, CL_INVALID_MEM_OBJECT), or
    /// faults the process then or later, as the C caller's undefined behaviour may.
    /// </summary>
    [Theory]
    [InlineData(CLError.CL_INVALID_MEM_OBJECT, "CL_INVALID_MEM_OBJECT (-38)")]
    [InlineData(CLError.CL_MISALIGNED_SUB_BUFFER_OFFSET, "CL_MISALIGNED_SUB_BUFFER_OFFSET (-13)")]
    [InlineData(CLError.CL_OUT_OF_RESOURCES, "CL_OUT_OF_RESOURCES (-5)")]
    public void AnOpenClErrorIsNamedByItsCode(CLError error, string code) => Assert.Equal(
        $"the OpenCL driver refused the call with {code}; on \"opencl\" the ids, valid-token and loss pointers must be cl_mem objects, and a host or CUDA pointer there draws an error of any code.",
        NativeChecks.OpenCl(error));


    private static ulong[] AggregatorCounts(long handle)
    {
        var counts = new ulong[Experts];
        fixed (ulong* destination = counts)
        {
            Assert.Equal(Ok, ((delegate* unmanaged<long, ulong*, int, int>)&NativeApi.ExpertCounts)(handle, destination, Experts));
        }

        return counts;
    }
}
