using System.Text.RegularExpressions;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>
/// The default kernels compile to the PTX kept in <c>Golden/</c>: a refactoring of the kernels' C#
/// must not change the code the GPU runs, whose registers, occupancy and timings were measured. A
/// deliberate change to a kernel regenerates the files (<c>MoeGpuStats.Bench --emit-ptx DIR</c>), so
/// that the PTX diff is reviewed with it.
/// </summary>
/// <remarks>
/// Only trailing whitespace and the numbers of ILGPU's generated names are normalised. Those names
/// (<c>_ids_10305</c>, labels <c>L_10303169</c>) carry IR node ids from a counter shared by every
/// compilation in the process, so the same kernel gets other numbers after other compilations; they
/// are renamed in order of first appearance, which keeps every instruction, operand and branch target.
/// </remarks>
public sealed partial class GoldenPtxTests
{
    /// <summary>The golden file's name (without .ptx) and the kernel, as <see cref="KernelPtx.Generate(string, CudaArchitecture, CudaInstructionSet, int)"/> takes it.</summary>
    public static TheoryData<string, string> DefaultKernels => new()
    {
        { "RoutingRecordKernel", nameof(RoutingRecordKernel) },
        { "RoutingRecordKernel.QuadLoadRuns", KernelPtx.QuadLoadRecordKernel },
        { "UtilizationQueryKernel", nameof(UtilizationQueryKernel) },
    };

    [Theory]
    [MemberData(nameof(DefaultKernels))]
    public void DefaultKernelCompilesToTheGoldenPtx(string golden, string kernel)
    {
        var expected = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "golden-ptx", golden + ".ptx"));
        var actual = KernelPtx.Generate(kernel, CudaArchitecture.SM_90, CudaInstructionSet.ISA_78);
        Assert.Equal(Normalise(expected), Normalise(actual));
    }

    [Fact]
    public void NormalisingRenamesOnlyGeneratedNamesAndKeepsTheirPattern()
    {
        const string ptx = ".param .b8 _ids_17[16]  \nld.param.b64 %rd1, [_ids_17];\nL_151: bra L_1512;\nbra L_151;\nmov.u32 %r1, 4096;";
        Assert.Equal(".param .b8 _ids_#0[16]\nld.param.b64 %rd1, [_ids_#0];\nL_#0: bra L_#1;\nbra L_#0;\nmov.u32 %r1, 4096;", Normalise(ptx));
        Assert.NotEqual(Normalise(ptx), Normalise(ptx.Replace("bra L_151;", "bra L_1512;", StringComparison.Ordinal)));
    }

    private static string Normalise(string ptx)
    {
        var trimmed = string.Join('\n', ptx.ReplaceLineEndings("\n").Split('\n').Select(line => line.TrimEnd())).TrimEnd();
        var labels = new Dictionary<string, int>();
        var parameters = new Dictionary<string, int>();
        trimmed = Label().Replace(trimmed, m => $"L_#{Canonical(labels, m.Value)}");
        return Parameter().Replace(trimmed, m => $"_{m.Groups["name"].Value}_#{Canonical(parameters, m.Value)}");
    }

    private static int Canonical(Dictionary<string, int> names, string name)
    {
        if (!names.TryGetValue(name, out var index))
        {
            index = names.Count;
            names.Add(name, index);
        }

        return index;
    }

    [GeneratedRegex(@"\bL_\d+\b")]
    private static partial Regex Label();

    [GeneratedRegex(@"\b_(?<name>[A-Za-z][A-Za-z0-9]*)_\d+\b")]
    private static partial Regex Parameter();
}
