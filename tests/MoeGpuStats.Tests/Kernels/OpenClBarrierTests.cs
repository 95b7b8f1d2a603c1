using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>
/// Every barrier of every kernel's OpenCL C is reached by every work-item of its group, or by none
/// (<see cref="OpenClBarrierDivergence"/>): the kind of defect that made PoCL run the model kernel's ticket on all
/// 256 work-items, so that no step was ever folded on OpenCL. Checked on the code ILGPU generates, without a device.
/// </summary>
public sealed class OpenClBarrierTests
{
    public static TheoryData<string> Kernels => [.. KernelPtx.Kernels];

    [Theory]
    [MemberData(nameof(Kernels))]
    public void EveryWorkItemOfAGroupReachesEachBarrier(string kernel)
    {
        Assert.Empty(OpenClBarrierDivergence.Find(KernelOpenCl.Generate(kernel)));
    }

    /// <summary>The model kernel's OpenCL C before the fix, as PoCL's driver got it, has exactly the fence under the ticket.</summary>
    [Fact]
    public void TheModelKernelBeforeTheFixIsFound()
    {
        var path = Path.Combine(Checkout.RequireRoot("the probe's model-kernel.cl is not here"), "docs/measurements/2026-12-04-h200-probe-b118cd3/model-kernel.cl");
        var found = Assert.Single(OpenClBarrierDivergence.Find(File.ReadAllText(path)));
        Assert.Contains("memory_scope_device", found, StringComparison.Ordinal);
    }

    /// <summary>The analysis finds a fence (a barrier in ILGPU's OpenCL C) under a branch on the local id, as the model kernel had one.</summary>
    [Fact]
    public void AFenceUnderABranchOnTheLocalIdIsFound()
    {
        const string source = """
            kernel void Kernel_Kernel(global int* view_0)
            {
            	L_1: ;
            	var2 =  get_local_id ( 0 );
            	 work_group_barrier ( CLK_GLOBAL_MEM_FENCE );
            	var3 = (int) var2 != (int) 0;
            	if (var3)
            		 goto L_5;
            	 goto L_4;

            	L_4: ;
            	 work_group_barrier ( CLK_GLOBAL_MEM_FENCE ,  memory_scope_device );
            	var6 =  atomic_fetch_add ((atomic_int*)view_0, (int)1);
            	 goto L_5;

            	L_5: ;
            	 work_group_barrier ( CLK_GLOBAL_MEM_FENCE );
            	 return ;
            }
            """;
        var found = Assert.Single(OpenClBarrierDivergence.Find(source));
        Assert.StartsWith("work_group_barrier ( CLK_GLOBAL_MEM_FENCE ,  memory_scope_device ); in L_4, under the branch on var3", found, StringComparison.Ordinal);
    }

    /// <summary>
    /// What differs per work-item reaches a branch through values and through assignments made under another such
    /// branch; a branch on a value loaded through a shared pointer, and a barrier after a divergent loop ends, are fine.
    /// </summary>
    [Fact]
    public void DivergenceFollowsValuesAndPathsAndStopsWhereBranchesMeet()
    {
        const string source = """
            kernel void Kernel_Kernel(global int* view_0)
            {
            	L_1: ;
            	var2 =  get_local_id ( 0 );
            	var9 =  * view_0;
            	var10 = (int) var9 != (int) 0;
            	if (var10)
            		 goto L_20;
            	 goto L_21;

            	L_20: ;
            	 work_group_barrier ( CLK_GLOBAL_MEM_FENCE );
            	 goto L_21;

            	L_21: ;
            	var30 = var2;
            	 goto L_22;

            	L_22: ;
            	var31 = (int) var30 < (int) 64;
            	if (var31)
            		 goto L_23;
            	 goto L_24;

            	L_23: ;
            	var30 = (int) var30 + (int) 256;
            	 goto L_22;

            	L_24: ;
            	 work_group_barrier ( CLK_GLOBAL_MEM_FENCE );
            	var3 = (int) var2 > (int) 5;
            	if (var3)
            		 goto L_6;
            	 goto L_7;

            	L_6: ;
            	var4 = 1;
            	 goto L_8;

            	L_7: ;
            	var4 = 0;
            	 goto L_8;

            	L_8: ;
            	var5 = (int) var4 == (int) 1;
            	if (var5)
            		 goto L_9;
            	 goto L_10;

            	L_9: ;
            	 barrier ( CLK_LOCAL_MEM_FENCE );
            	 goto L_10;

            	L_10: ;
            	 return ;
            }
            """;
        var found = Assert.Single(OpenClBarrierDivergence.Find(source));
        Assert.StartsWith("barrier ( CLK_LOCAL_MEM_FENCE ); in L_9, under the branch on var5", found, StringComparison.Ordinal);
    }

    /// <summary>An early return that some work-items take leaves the barriers after it to the others.</summary>
    [Fact]
    public void ABarrierAfterAReturnSomeWorkItemsTakeIsFound()
    {
        const string source = """
            kernel void Kernel_Kernel(global int* view_0)
            {
            	var2 =  get_global_id ( 0 );
            	var3 = (int) var2 >= (int) 100;
            	if (var3)
            		 return ;


            	 work_group_barrier ( CLK_GLOBAL_MEM_FENCE );
            	 return ;
            }
            """;
        var found = Assert.Single(OpenClBarrierDivergence.Find(source));
        Assert.StartsWith("work_group_barrier ( CLK_GLOBAL_MEM_FENCE ); in after line 6, under the branch on var3 in entry", found, StringComparison.Ordinal);
    }
}
