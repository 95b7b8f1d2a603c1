using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Support;

/// <summary>A routing state of <c>experts</c> experts in buffers of its own, zeroed, for tests that call the record launcher directly.</summary>
internal sealed class LauncherState : IDisposable
{
    public LauncherState(Accelerator device, int experts)
    {
        Block = device.Allocate1D<RoutingStateBlock>(1);
        Counts = device.Allocate1D<ulong>(RoutingStateLayout.BatchHistogramLength);
        Invalid = device.Allocate1D<ulong>(RoutingStateLayout.BatchBuffers);
        TokenCounts = device.Allocate1D<ulong>(experts);
        Floats = device.Allocate1D<float>(experts);
        Decayed = device.Allocate1D<double>(experts);
        Ring = device.Allocate1D<float>(RoutingStateLayout.VarianceWindow);
        PaddedTokens = device.Allocate1D<ulong>(RoutingStateLayout.BatchBuffers);
        Sums = device.Allocate1D<double>(experts);
        PaddedTokens.MemSetToZero();
        Sums.MemSetToZero();
        Block.MemSetToZero();
        Counts.MemSetToZero();
        Invalid.MemSetToZero();
        TokenCounts.MemSetToZero();
        Floats.MemSetToZero();
        Decayed.MemSetToZero();
        Ring.MemSetToZero();
        Views = new RoutingStateViews
        {
            State = Block.View, BatchHistogram = Counts.View, BatchInvalid = Invalid.View, BatchPaddedTokens = PaddedTokens.View,
            UtilizationSums = Sums.View, TokenCounts = TokenCounts.View,
            Utilization = Floats.View, DecayedUtilization = Decayed.View, VarianceHistory = Ring.View,
        };
    }

    public MemoryBuffer1D<RoutingStateBlock, Stride1D.Dense> Block { get; }

    /// <summary>Both batch buffers, <see cref="RoutingStateLayout.BufferLength"/> counts each.</summary>
    public MemoryBuffer1D<ulong, Stride1D.Dense> Counts { get; }

    public MemoryBuffer1D<ulong, Stride1D.Dense> Invalid { get; }

    public MemoryBuffer1D<ulong, Stride1D.Dense> PaddedTokens { get; }

    public MemoryBuffer1D<double, Stride1D.Dense> Sums { get; }

    public MemoryBuffer1D<ulong, Stride1D.Dense> TokenCounts { get; }

    /// <summary>The utilization.</summary>
    public MemoryBuffer1D<float, Stride1D.Dense> Floats { get; }

    /// <summary>The decayed utilization.</summary>
    public MemoryBuffer1D<double, Stride1D.Dense> Decayed { get; }

    public MemoryBuffer1D<float, Stride1D.Dense> Ring { get; }

    public RoutingStateViews Views { get; }

    public void Dispose()
    {
        Block.Dispose();
        Counts.Dispose();
        Invalid.Dispose();
        TokenCounts.Dispose();
        Floats.Dispose();
        Decayed.Dispose();
        Ring.Dispose();
        PaddedTokens.Dispose();
        Sums.Dispose();
    }
}
