using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends.OpenCL;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;
using ILGPU.Backends.EntryPoints;
using MoeGpuStats.Kernels;
using MoeGpuStats.Kernels.Model;
using MoeGpuStats.Lab;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>
/// The kernels compile for the GPU backends on a machine without a GPU, so CI catches a construct
/// that only the CPU accelerator accepts, and the compiled code keeps the properties the design
/// relies on: one entry point per record, products rounded before they are added, the histogram
/// in shared memory, at most 18.5 KiB of shared memory per record group (the 16 KiB histogram, one
/// long per thread for group sums: eight groups fit in the 164 KiB of an A100's multiprocessor and
/// the 228 KiB of an H100's) and at most the 32 KiB every OpenCL device has for the query's one
/// group, several id loads in flight per thread, no device-wide fence in a record. The whole-model
/// kernels (a step's record, within a record's budget, and the balance) are held to the same
/// code properties, the step without the single-layer record's shape checks: its last group takes
/// a ticket behind a device-wide fence by design.
/// </summary>
public sealed partial class KernelCompilationTests
{
    private const int RecordSharedBudgetBytes = (16 + 2) * 1024 + 64;

    private const int QuerySharedBudgetBytes = 32 * 1024;

    /// <summary>The library's kernels and the record kernel with each of the device check's <see cref="CandidateCounting"/>s.</summary>
    public static TheoryData<string> Kernels => [.. KernelPtx.Kernels, .. CandidateCounting.All.Select(c => c.KernelName)];

    public static TheoryData<string> RecordKernels => [nameof(RoutingRecordKernel), CandidateCounting.WarpAggregated.KernelName, KernelPtx.QuadLoadRecordKernel];

    /// <summary>The kernels an OpenCL device runs (warp aggregation and quad loads are CUDA's and the CPU accelerator's).</summary>
    public static TheoryData<string> OpenClKernels => [.. KernelPtx.Kernels.Where(k => k != KernelPtx.QuadLoadRecordKernel)];

    [Theory]
    [MemberData(nameof(Kernels))]
    public void KernelCompilesToPtxForHopper(string kernel)
    {
        var ptx = Ptx(kernel, CudaInstructionSet.ISA_80);

        Assert.Single(Regex.Matches(ptx, @"\.entry\s"));

        // Every float product goes through UnfusedMath.Mul: a mul.rn.f32 for CUDA plus, on the
        // branch the JIT drops, a mul.f32. A product written with * leaves an unpaired mul.f32,
        // which the CUDA JIT may fuse with an add and so round differently from the managed engine.
        Assert.Equal(Regex.Count(ptx, @"\bmul\.rn\.f32\b"), Regex.Count(ptx, @"\bmul\.f32\b"));
        Assert.DoesNotMatch(@"\bfma\.", ptx);

        // sm_90 has no 64-bit shared atomic add: ptxas turns one into a compare-and-swap loop, which
        // the fold's 256 threads once ran on one address for most of a small record's time (H200).
        Assert.DoesNotMatch(@"\b(red|atom)\.[a-z.]*shared[a-z.]*\.[usb]64\b", ptx);
        var shared = PtxSharedDeclaration().Matches(ptx).Sum(m => int.Parse(m.Groups[1].Value));
        var isRecordKernel = kernel.StartsWith(nameof(RoutingRecordKernel), StringComparison.Ordinal);
        Assert.InRange(shared, 0, isRecordKernel || kernel.StartsWith(nameof(ModelRecordKernel), StringComparison.Ordinal) ? RecordSharedBudgetBytes : QuerySharedBudgetBytes);
        if (isRecordKernel)
        {
            Assert.Matches(@"(red|atom)\.(add\.)?shared\.(add\.)?u32", ptx);
            Assert.True(shared >= RoutingStateLayout.MaxExperts * sizeof(int), $"{shared} bytes of shared memory cannot hold the histogram");
            Assert.True(IdsLoadedBeforeAnAtomic(ptx) >= 4, "the id loop should load four ids before its first atomic");

            // Groups never wait for each other: the fold group reads the batch buffer the previous launch
            // filled, so no device-wide fence (membar.gl, fence.*.gpu) is needed, and each cost
            // every group a round trip when the last group to finish folded.
            Assert.DoesNotMatch(@"\b(membar\.gl|fence\.[a-z_.]*gpu)\b", ptx);
        }

        // match.any exists from sm_70 on: only the kernel that needs it may carry it, so the
        // default kernel still loads on older GPUs.
        if (kernel == CandidateCounting.WarpAggregated.KernelName)
        {
            Assert.Matches(@"\bmatch\.any\.sync\.b32\b", ptx);
        }
        else
        {
            Assert.DoesNotMatch(@"\bmatch\.", ptx);
        }
    }

    /// <summary>The most 32-bit values loaded from global memory (four per 128-bit load) with no atomic between them.</summary>
    private static int IdsLoadedBeforeAnAtomic(string ptx)
    {
        var longest = 0;
        var current = 0;
        foreach (var line in ptx.Split('\n'))
        {
            var load = IdLoad().Match(line);
            if (load.Success)
            {
                current += load.Groups["quad"].Success ? 4 : 1;
                longest = Math.Max(longest, current);
            }
            else if (line.Contains("red.", StringComparison.Ordinal) || line.Contains("atom.", StringComparison.Ordinal) || line.Contains("bar.sync", StringComparison.Ordinal))
            {
                current = 0;
            }
        }

        return longest;
    }

    /// <summary>
    /// NVIDIA's assembler turns each record kernel's PTX (either histogram counting) into sm_90 code that fits eight groups of 256
    /// threads on a multiprocessor (65,536 registers / 2,048 threads = 32 each) without spilling, so
    /// the occupancy-sized grid is one full wave. Needs ptxas: <c>MOEGS_PTXAS</c>, PATH, or
    /// /usr/local/cuda/bin; <c>bash scripts/ptxas.sh</c> fetches one (CUDA 11.8, hence PTX ISA 7.8).
    /// </summary>
    [Theory]
    [MemberData(nameof(RecordKernels))]
    public void RecordKernelFitsEightGroupsPerMultiprocessorOnHopper(string kernel) => AssertAssembles(kernel, maxRegisters: 32, groups: "eight");

    /// <summary>
    /// The whole-model step assembles for sm_90 without spilling, at the registers that leave three
    /// groups of 256 resident per multiprocessor (registers go to a warp in eights: 80 × 32 × 8 warps × 3 groups ≤ 65,536): its launcher sizes the grid
    /// by the occupancy the driver reports, so more registers mean fewer counting groups per layer,
    /// not a failed launch. With ptxas 11.8 it takes 66 registers; bounds of eight groups (the
    /// single-layer record's) would make it spill, and which is faster is for a GPU to say.
    /// Needs ptxas, as <see cref="RecordKernelFitsEightGroupsPerMultiprocessorOnHopper"/>. The same holds for int64 and int16 ids.
    /// </summary>
    [Theory]
    [InlineData(nameof(ModelRecordKernel))]
    [InlineData(KernelPtx.ModelRecordKernelInt64)]
    [InlineData(KernelPtx.ModelRecordKernelInt16)]
    public void ModelRecordKernelFitsThreeGroupsPerMultiprocessorOnHopperWithoutSpilling(string kernel) =>
        AssertAssembles(kernel, maxRegisters: 80, groups: "three");

    /// <summary>ptxas assembles <paramref name="kernel"/>'s PTX for sm_90 without spilling, in at most <paramref name="maxRegisters"/> registers per thread (skips without ptxas).</summary>
    private static void AssertAssembles(string kernel, int maxRegisters, string groups)
    {
        var ptxas = FindPtxas();
        Assert.SkipWhen(ptxas is null, "No ptxas here: set MOEGS_PTXAS (bash scripts/ptxas.sh fetches one) or install a CUDA toolkit.");
        var folder = Directory.CreateTempSubdirectory("moegs-ptxas-");
        try
        {
            var source = Path.Combine(folder.FullName, "kernel.ptx");
            File.WriteAllText(source, Ptx(kernel, CudaInstructionSet.ISA_78));
            var report = ExternalProgram.Run(ptxas!, $"-arch=sm_90 -O3 -v \"{source}\" -o \"{Path.Combine(folder.FullName, "kernel.cubin")}\"", out var exitCode);
            Assert.True(exitCode == 0, $"ptxas exited with {exitCode}:\n{report}");

            var registers = int.Parse(PtxasRegisters().Match(report).Groups[1].Value);
            Assert.True(registers <= maxRegisters, $"{registers} registers per thread: fewer than {groups} groups fit on a multiprocessor.\n{report}");
            Assert.True(report.Contains("0 bytes spill stores, 0 bytes spill loads"), $"The kernel spills:\n{report}");
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>
    /// The record kernels' PTX carries the launch bounds they are loaded with on CUDA (groups of 256,
    /// eight resident per multiprocessor), and this ILGPU still has the internals that loading such
    /// PTX needs: the kernel compiled again with new PTX keeps its entry point and parameters.
    /// </summary>
    [Theory]
    [MemberData(nameof(RecordKernels))]
    public void RecordKernelCarriesLaunchBoundsForEightGroupsPerMultiprocessor(string kernel)
    {
        var ptx = Ptx(kernel, CudaInstructionSet.ISA_78);
        Assert.Matches(@"\.entry\s+\w+\([^)]*\)\s*\.maxntid 256, 1, 1\s*\.minnctapersm 8\s*\{", ptx);
        Assert.Equal(ptx, CudaLaunchBounds.Add(Unbounded(ptx), 256, 2048));

        Assert.True(CudaLaunchBounds.Supported, "ILGPU's PTXCompiledKernel constructor or CompiledKernel.EntryPoint is gone: launch bounds cannot be loaded.");
        using var context = Context.Create(builder => builder.Default());
        using var backend = new PTXBackend(context, new CudaCapabilityContext(CudaArchitecture.SM_90), CudaArchitecture.SM_90, CudaInstructionSet.ISA_78, nvvmAPI: null);
        var compiled = (PTXCompiledKernel)backend.Compile(EntryPoint(kernel), KernelSpecialization.Empty);
        var bounded = CudaLaunchBounds.WithPtx(compiled, ptx);
        Assert.Equal((ptx, compiled.Name, compiled.NumParameters), (bounded.PTXAssembly, bounded.Name, bounded.NumParameters));
    }

    [Theory]
    [MemberData(nameof(OpenClKernels))]
    public void KernelCompilesToOpenCl20WithTheCapabilitiesOfPocl(string kernel)
    {
        using var context = Context.Create(builder => builder.Default());
        var pocl = new CLCapabilityContext(float16: false, float64: true, genericAddressSpace: true, int64_Atomics: true, subGroups: false);
        using var backend = new CLBackend(context, pocl, CLDeviceVendor.Other, CLCVersion.CL20);

        var source = ((CLCompiledKernel)backend.Compile(EntryPoint(kernel), KernelSpecialization.Empty)).Source;

        Assert.Single(Regex.Matches(source, @"\bkernel\s+void\b"));

        // Both kernels once read ILGPU's warp size (get_sub_group_size() in OpenCL C), and on PoCL 5
        // the record kernel then corrupted the host heap and the query left fields unwritten.
        Assert.DoesNotContain("sub_group", source, StringComparison.Ordinal);
        if (kernel == nameof(RoutingRecordKernel))
        {
            Assert.Contains("local", source, StringComparison.Ordinal);
            Assert.Contains("atomic", source, StringComparison.Ordinal);
        }
    }

    private static string Ptx(string kernel, CudaInstructionSet instructionSet) =>
        Candidate(kernel) is { } candidate
            ? KernelPtx.Generate(candidate.Kernel, launchBounds: true, CudaArchitecture.SM_90, instructionSet)
            : KernelPtx.Generate(kernel, CudaArchitecture.SM_90, instructionSet);

    private static EntryPointDescription EntryPoint(string kernel) =>
        Candidate(kernel) is { } candidate ? KernelPtx.EntryPoint(candidate.Kernel) : KernelPtx.EntryPoint(kernel);

    private static CandidateCounting? Candidate(string kernel) => CandidateCounting.All.SingleOrDefault(c => c.KernelName == kernel);

    private static string Unbounded(string ptx) => Regex.Replace(ptx, @"\n\.maxntid [^\n]*\n\.minnctapersm \d+", "");

    private static string? FindPtxas() =>
        new[] { Environment.GetEnvironmentVariable("MOEGS_PTXAS"), ExternalProgram.FindOnPath("ptxas"), "/usr/local/cuda/bin/ptxas" }
            .FirstOrDefault(path => !string.IsNullOrEmpty(path) && File.Exists(path));

    /// <summary>A 32-bit load from global memory: generic (<c>ld.b32</c>, ILGPU's default O1) or <c>ld.global</c> (O2).</summary>
    [GeneratedRegex(@"\bld(\.global)?(\.nc)?(?<quad>\.v4)?\.b32\b")]
    private static partial Regex IdLoad();

    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex PtxasRegisters();

    [GeneratedRegex(@"\.shared\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d+)\]")]
    private static partial Regex PtxSharedDeclaration();
}
