using ILGPU.Runtime.Cuda;

namespace MoeGpuStats.Kernels;

/// <summary>
/// Products rounded on their own, as the seed (Rust) and the managed engine round them. ILGPU emits
/// a plain <c>mul.f32</c>, which the CUDA JIT may fuse with a following add into one FMA (a single
/// rounding): the last bit of an average or a variance then differs from the managed engine's, and
/// the variance trend's cancellation magnifies such bits. <c>mul.rn.f32</c> is never fused. The CPU
/// accelerator runs .NET arithmetic, which does not fuse; ILGPU's OpenCL C keeps each product in
/// its own statement, which OpenCL's default contraction does not cross.
/// </summary>
internal static class UnfusedMath
{
    /// <summary><paramref name="a"/> × <paramref name="b"/>, rounded to float before any later add.</summary>
    public static float Mul(float a, float b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("mul.rn.f32 %0, %1, %2;", out float product, a, b);
            return product;
        }

        return a * b;
    }

    /// <summary><paramref name="a"/> × <paramref name="b"/>, rounded to double before any later add.</summary>
    public static double Mul(double a, double b)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("mul.rn.f64 %0, %1, %2;", out double product, a, b);
            return product;
        }

        return a * b;
    }
}
