using System.Diagnostics.CodeAnalysis;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using static System.FormattableString;

namespace MoeGpuStats.Kernels;

/// <summary>What an accelerator can run of the record kernel.</summary>
internal static partial class RoutingRecordKernel
{
    /// <summary>Whether <paramref name="accelerator"/> can run <paramref name="counting"/>, and if not, why.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    internal static bool Supports(Accelerator accelerator, HistogramCounting counting, [NotNullWhen(false)] out string? reason)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        reason = counting switch
        {
            HistogramCounting.QuadLoadRuns when accelerator is CudaAccelerator or CPUAccelerator => null,
            HistogramCounting.QuadLoadRuns =>
                Invariant($"Quad-load counting runs on CUDA and the CPU accelerator, not on {accelerator.AcceleratorType} ({accelerator.Name}), where its 128-bit loads are unmeasured."),
            _ => null,
        };
        return reason is null;
    }

    /// <summary>Threads per group on <paramref name="accelerator"/>: <see cref="PreferredGroupSize"/> or fewer.</summary>
    internal static int GroupSize(Accelerator accelerator) => Math.Min(PreferredGroupSize, accelerator.MaxNumThreadsPerGroup);
}
