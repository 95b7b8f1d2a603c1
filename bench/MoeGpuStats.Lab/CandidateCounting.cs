using System.Diagnostics.CodeAnalysis;
using System.Reflection;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Lab;

/// <summary>
/// A histogram counting that the library does not ship, for the device check to time against the
/// library's (<see cref="HistogramCounting"/>): one measured slower and kept for other loads and
/// GPUs, or a predicted gain, measured before it is taken.
/// </summary>
/// <param name="Name">The name the device check prints.</param>
/// <param name="Create">Loads the record kernel with this counting and the policy's grid rule; throws <see cref="NotSupportedException"/> where the accelerator cannot run it.</param>
/// <param name="Kernel">The record kernel with this counting, for its PTX (<c>--emit-ptx</c>).</param>
/// <param name="Refusal">Why an accelerator cannot run this counting, or null where it can.</param>
internal sealed record CandidateCounting(
    string Name, Func<Accelerator, RecordKernelPolicy, RoutingRecordLauncher> Create, MethodInfo Kernel, Func<Accelerator, string?> Refusal)
{
    /// <summary>Warp aggregation (<see cref="WarpAggregatedCounting"/>), for collapsed routers.</summary>
    public static CandidateCounting WarpAggregated { get; } = new(
        "WarpAggregated",
        (accelerator, policy) => WarpAggregatedCounting.Supports(accelerator, out var reason)
            ? RoutingRecordKernel.Create<WarpAggregatedCounting>(accelerator, policy)
            : throw new NotSupportedException(reason),
        KernelPtx.RecordKernel<WarpAggregatedCounting>(),
        accelerator => WarpAggregatedCounting.Supports(accelerator, out var reason) ? null : reason);

    /// <summary>The candidates, in the order the device check prints them.</summary>
    public static IReadOnlyList<CandidateCounting> All { get; } = [WarpAggregated];

    /// <summary>The kernel's name in <c>--emit-ptx</c>'s files and the tests, beside <see cref="KernelPtx.Kernels"/>.</summary>
    public string KernelName => nameof(RoutingRecordKernel) + "." + Name;

    /// <summary>Whether <paramref name="accelerator"/> can run this counting, and if not, why.</summary>
    public bool Supports(Accelerator accelerator, [NotNullWhen(false)] out string? reason)
    {
        reason = Refusal(accelerator);
        return reason is null;
    }

    /// <summary>Loads the record kernel with this counting, tuned as the library tunes <paramref name="accelerator"/>.</summary>
    public RoutingRecordLauncher CreateDefault(Accelerator accelerator) => Create(accelerator, RecordKernelPolicy.For(accelerator));
}
