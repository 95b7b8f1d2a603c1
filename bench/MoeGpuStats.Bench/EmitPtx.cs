using ILGPU.Runtime.Cuda;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Bench;

/// <summary>
/// <c>--emit-ptx DIR</c>: writes each kernel's PTX for sm_90 (PTX ISA 7.8, which CUDA 11.8's ptxas
/// and every newer one read) into DIR, with the commands that show its registers and its SASS:
/// static facts about the GPU code that need no GPU (<c>bash scripts/ptxas.sh</c> fetches ptxas).
/// </summary>
internal static class EmitPtx
{
    public static int Run(string[] args)
    {
        var position = Array.IndexOf(args, "--emit-ptx");
        var folder = position + 1 < args.Length ? args[position + 1] : "ptx";
        Directory.CreateDirectory(folder);
        foreach (var kernel in KernelPtx.Kernels)
        {
            var path = Path.Combine(folder, kernel + ".ptx");
            File.WriteAllText(path, KernelPtx.Generate(kernel, CudaArchitecture.SM_90, CudaInstructionSet.ISA_78));
            var cubin = Path.ChangeExtension(path, ".cubin");
            Console.WriteLine($"{path}\n  ptxas -arch=sm_90 -O3 -v {path} -o {cubin} && cuobjdump -sass {cubin}");
        }

        return 0;
    }
}
