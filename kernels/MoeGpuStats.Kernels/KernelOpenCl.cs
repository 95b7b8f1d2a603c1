using ILGPU;
using ILGPU.Backends.OpenCL;
using ILGPU.Runtime;
using ILGPU.Runtime.OpenCL;

namespace MoeGpuStats.Kernels;

/// <summary>
/// The OpenCL C that ILGPU generates for the kernels, without an OpenCL device: what the tests check for
/// barriers that only some work-items reach, and what the GPU machine's probe writes out for its driver.
/// </summary>
internal static class KernelOpenCl
{
    /// <summary>
    /// The capabilities PoCL's CPU device reports, the OpenCL driver of the GPU machine: doubles, the generic address
    /// space, 64-bit atomics and sub-groups, no halves.
    /// </summary>
    public static CLCapabilityContext PoclCapabilities { get; } = new(float16: false, float64: true, genericAddressSpace: true, int64_Atomics: true, subGroups: true);

    /// <summary>
    /// <paramref name="kernel"/> (one of <see cref="KernelPtx.Kernels"/>) as OpenCL C for a device of
    /// <paramref name="capabilities"/> (PoCL's by default), <paramref name="vendor"/> and OpenCL C
    /// <paramref name="version"/> (2.0 by default), compiled with ILGPU's default (O1) pipeline as the library's contexts do.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="kernel"/> is not one of <see cref="KernelPtx.Kernels"/>.</exception>
    public static string Generate(string kernel, CLCapabilityContext? capabilities = null, CLDeviceVendor vendor = CLDeviceVendor.Other, CLCVersion? version = null)
    {
        using var context = Context.Create(builder => builder.Default());
        using var backend = new CLBackend(context, capabilities ?? PoclCapabilities, vendor, version ?? CLCVersion.CL20);
        return ((CLCompiledKernel)backend.Compile(KernelPtx.EntryPoint(kernel), KernelSpecialization.Empty)).Source;
    }
}
