using ILGPU;
using static MoeGpuStats.Kernels.RoutingStateLayout;

namespace MoeGpuStats.Kernels.Model;

/// <summary>
/// The device buffers of a whole model's routing state: one single-layer state per layer, laid
/// layer-major in shared buffers (<see cref="Layer"/> cuts one out), the sliding window of
/// per-step loads, and the step control that lets a launch find its buffers without the host.
/// </summary>
/// <remarks>
/// Layer l's state is the single-layer <see cref="RoutingStateViews"/> at <c>l</c> times each
/// array's per-layer length, so that a layer folds with the single-layer fold and reads with the
/// single-layer query: layer l of a model equals a <c>RoutingStats</c> fed layer l's ids alone.
/// </remarks>
internal struct ModelStateViews
{
    /// <summary>The layers' scalar blocks, <c>[layers]</c>.</summary>
    public ArrayView<RoutingStateBlock> Blocks;

    /// <summary>The layers' batch buffers, <c>[layers, <see cref="BatchHistogramLength"/>]</c>.</summary>
    public ArrayView<ulong> BatchHistogram;

    /// <summary>Invalid ids per layer and batch buffer, <c>[layers, 2]</c>.</summary>
    public ArrayView<ulong> BatchInvalid;

    /// <summary>Padded tokens per layer and batch buffer, <c>[layers, 2]</c>.</summary>
    public ArrayView<ulong> BatchPaddedTokens;

    /// <summary><c>[layers, experts]</c>.</summary>
    public ArrayView<double> UtilizationSums;

    /// <summary>Slots per expert since the start, <c>[layers, experts]</c>.</summary>
    public ArrayView<ulong> TokenCounts;

    /// <summary><c>[layers, experts]</c>.</summary>
    public ArrayView<float> Utilization;

    /// <summary><c>[layers, experts]</c>, f64 as <see cref="RoutingStateViews.DecayedUtilization"/>.</summary>
    public ArrayView<double> DecayedUtilization;

    /// <summary><c>[layers, <see cref="VarianceWindow"/>]</c>.</summary>
    public ArrayView<float> VarianceHistory;

    /// <summary>The last <c>window</c> steps' slots per expert, <c>[window, layers, experts]</c>, by ring position.</summary>
    public ArrayView<uint> WindowRing;

    /// <summary>The sum of <see cref="WindowRing"/> over its positions, <c>[layers, experts]</c>: the window's load.</summary>
    public ArrayView<ulong> WindowLoad;

    /// <summary>The step control, <see cref="ModelStateLayout.ControlLength"/> ints (<see cref="ModelStateLayout"/> names them).</summary>
    public ArrayView<int> Control;

    /// <summary>Each batch buffer's per-layer losses as its step gave them, <c>[2, layers, 2]</c> (load-balancing, z).</summary>
    public ArrayView<float> PendingLosses;

    /// <summary>Layer <paramref name="layer"/>'s single-layer state, for a model of <paramref name="experts"/> experts.</summary>
    public readonly RoutingStateViews Layer(int layer, int experts) => new()
    {
        State = Blocks.SubView(layer, 1),
        BatchHistogram = BatchHistogram.SubView((long)layer * BatchHistogramLength, BatchHistogramLength),
        BatchInvalid = BatchInvalid.SubView((long)layer * BatchBuffers, BatchBuffers),
        BatchPaddedTokens = BatchPaddedTokens.SubView((long)layer * BatchBuffers, BatchBuffers),
        UtilizationSums = UtilizationSums.SubView((long)layer * experts, experts),
        TokenCounts = TokenCounts.SubView((long)layer * experts, experts),
        Utilization = Utilization.SubView((long)layer * experts, experts),
        DecayedUtilization = DecayedUtilization.SubView((long)layer * experts, experts),
        VarianceHistory = VarianceHistory.SubView((long)layer * VarianceWindow, VarianceWindow),
    };
}
