using MoeGpuStats.Engines;
using MoeGpuStats.Kernels;
using MoeGpuStats.Kernels.Model;
using static MoeGpuStats.Kernels.RoutingStateLayout;
using static System.FormattableString;

namespace MoeGpuStats.Device;

/// <summary>A state written into the device's buffers, for a model that records on from it (a resumed checkpoint).</summary>
internal sealed partial class DeviceModelEngine
{
    /// <summary>
    /// Writes <paramref name="state"/> (an engine's export with its window ring, the caller's checks passed) into the
    /// cleared buffers as the steps that made it would have left them, nothing pending: the blocks, the per-expert
    /// arrays, each layer's variances from ring position 0, the window's load, its ring rows and position. Waits for
    /// the copies, which run once, before the first step.
    /// </summary>
    private void Import(ModelState state)
    {
        var experts = Options.Experts;
        var entries = (long)Options.Layers * experts;
        var blocks = new RoutingStateBlock[Options.Layers];
        var utilization = new float[entries];
        var sums = new double[entries];
        var decayed = new double[entries];
        var counts = new ulong[entries];
        var history = new float[Options.Layers * VarianceWindow];
        for (var l = 0; l < blocks.Length; l++)
        {
            var layer = state.Layers[l];
            var variances = layer.LoadVarianceHistory.AsSpan(Math.Max(0, layer.LoadVarianceHistory.Length - VarianceWindow));
            blocks[l] = BlockOf(layer, variances.Length);
            variances.CopyTo(history.AsSpan(l * VarianceWindow));
            var row = l * experts;
            layer.ExpertUtilization.CopyTo(utilization, row);
            ExportedSums(layer).CopyTo(sums, row);
            layer.DecayedExpertUtilization.CopyTo(decayed, row);
            layer.ExpertTokenCounts.CopyTo(counts, row);
        }

        var control = new int[ModelStateLayout.ControlLength];
        control[ModelStateLayout.WindowPosition] = state.WindowPosition;
        DeviceMemory.CopyFromHost<RoutingStateBlock>(Stream, _views.Blocks, blocks);
        DeviceMemory.CopyFromHost<float>(Stream, _views.Utilization, utilization);
        DeviceMemory.CopyFromHost<double>(Stream, _views.UtilizationSums, sums);
        DeviceMemory.CopyFromHost<double>(Stream, _views.DecayedUtilization, decayed);
        DeviceMemory.CopyFromHost<ulong>(Stream, _views.TokenCounts, counts);
        DeviceMemory.CopyFromHost<float>(Stream, _views.VarianceHistory, history);
        DeviceMemory.CopyFromHost<int>(Stream, _views.Control, control);
        DeviceMemory.CopyFromHost<ulong>(Stream, _views.WindowLoad, state.WindowLoad);
        DeviceMemory.CopyFromHost<uint>(Stream, _views.WindowRing.SubView(0, state.WindowRing!.LongLength), state.WindowRing);
        _knownSteps = state.Steps;
    }

    /// <summary>The block a layer's state is folded from; its <paramref name="variances"/> newest variances lie from ring position 0.</summary>
    private static RoutingStateBlock BlockOf(RoutingState layer, int variances) => new()
    {
        TotalRoutings = layer.TotalRoutings,
        TotalTokens = layer.TotalTokens,
        TokensDropped = layer.TokensDropped,
        InvalidExpertIds = layer.InvalidExpertIds,
        RoutedSlots = layer.RoutedSlots,
        SlotsDropped = layer.SlotsDropped,
        LoadBalanceLossSum = layer.LoadBalanceLossSum ?? throw NotExported(nameof(RoutingState.LoadBalanceLossSum)),
        RouterZLossSum = layer.RouterZLossSum ?? throw NotExported(nameof(RoutingState.RouterZLossSum)),
        AverageLoadBalanceLoss = layer.AverageLoadBalanceLoss,
        AverageRouterZLoss = layer.AverageRouterZLoss,
        RoutingEfficiency = layer.RoutingEfficiency,
        CapacityAverageUtilization = layer.CapacityAverageUtilization,
        CapacityPeakUtilization = layer.CapacityPeakUtilization,
        Experts = layer.ExpertUtilization.Length,
        CapacityExceededCount = layer.CapacityExceededCount,
        TotalCapacity = layer.TotalCapacity,
        TotalUsed = layer.TotalUsed,
        VarianceCount = variances,
        VarianceHead = 0,
    };

    private static double[] ExportedSums(RoutingState layer) => layer.UtilizationSums ?? throw NotExported(nameof(RoutingState.UtilizationSums));

    /// <summary>An engine's export always holds the f64 sums (only a file may lack them, and a model read from one exports its own).</summary>
    private static InvalidOperationException NotExported(string field) => new(Invariant($"The state to import has no {field}: import an engine's export, not a file's state."));
}
