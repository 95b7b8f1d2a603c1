using System.CommandLine;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Kernels;
using MoeGpuStats.Lab;

namespace MoeGpuStats.Bench;

/// <summary>
/// <c>--emit-ptx DIR</c>: writes each kernel's PTX (the record kernel's with each candidate counting too, and the whole-model
/// step kernel's under the launch bounds the model check times, <c>ModelRecordKernel.bounded-N</c> for N groups a
/// multiprocessor) for sm_90 (PTX ISA 7.8, which CUDA 11.8's ptxas and every newer one read) into DIR, with the commands that show its registers and its SASS:
/// static facts about the GPU code that need no GPU (<c>bash scripts/ptxas.sh</c> fetches ptxas).
/// </summary>
internal static class EmitPtx
{
    private static readonly Option<string> Folder = QuickOptions.Path(
        new Option<string>("--emit-ptx") { Description = "The folder to write each kernel's PTX into.", Arity = ArgumentArity.ZeroOrOne, DefaultValueFactory = _ => "ptx" },
        "the folder to write the PTX into");

    public static QuickMode Mode { get; } = new(Folder, "Writes the kernels' PTX and the commands that show their registers and SASS.", [], Run);

    private static int Run(ParseResult parsed)
    {
        var folder = parsed.GetRequiredValue(Folder);
        Directory.CreateDirectory(folder);
        foreach (var kernel in KernelPtx.Kernels)
        {
            Write(folder, kernel, KernelPtx.Generate(kernel, CudaArchitecture.SM_90, CudaInstructionSet.ISA_78));
        }

        var model = KernelPtx.Generate(nameof(Kernels.Model.ModelRecordKernel), CudaArchitecture.SM_90, CudaInstructionSet.ISA_78);
        foreach (var groups in ModelDeviceCheck.LaunchBounds)
        {
            Write(folder, $"{nameof(Kernels.Model.ModelRecordKernel)}.bounded-{groups}", CudaLaunchBounds.Add(model, RoutingRecordKernel.PreferredGroupSize, groups * RoutingRecordKernel.PreferredGroupSize));
        }

        foreach (var candidate in CandidateCounting.All)
        {
            var ptx = KernelPtx.Generate(candidate.Kernel, launchBounds: true, CudaArchitecture.SM_90, CudaInstructionSet.ISA_78);
            Write(folder, candidate.KernelName, ptx);
        }

        return 0;
    }

    private static void Write(string folder, string kernel, string ptx)
    {
        var path = Path.Combine(folder, kernel + ".ptx");
        File.WriteAllText(path, ptx);
        var cubin = Path.ChangeExtension(path, ".cubin");
        Console.WriteLine($"{path}\n  ptxas -arch=sm_90 -O3 -v {path} -o {cubin} && cuobjdump -sass {cubin}");
    }
}
