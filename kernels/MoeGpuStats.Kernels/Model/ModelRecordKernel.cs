using ILGPU;
using static MoeGpuStats.Kernels.Model.ModelStateLayout;
using static MoeGpuStats.Kernels.RoutingStateLayout;

namespace MoeGpuStats.Kernels.Model;

/// <summary>
/// One step of a whole model in one launch: <see cref="ModelStepArguments.GroupsPerLayer"/> groups
/// per layer histogram that layer's ids into its counting buffer, while one group per layer folds
/// the previous step (the other buffer) into that layer's window ring and running state, with the
/// single-layer fold. The last group to finish writes the step control for the next launch.
/// </summary>
/// <remarks>
/// The single-layer record hands the pending record from launch to launch through the host; here
/// the device holds it (<see cref="ModelStateLayout"/>), so a launch needs nothing a previous
/// launch returned, as a CUDA graph that replays one set of arguments requires. Layers fold in
/// parallel groups, each beside the counting, so a step costs about one layer's fold, not L.
/// </remarks>
internal static class ModelRecordKernel
{
    /// <summary>The kernel body; launch it through <see cref="ModelRecordLauncher"/>.</summary>
    /// <param name="ids">The step's ids (int32, int64 or int16), token t's k ids of layer l at <c>l × LayerStride + t × TokenStride</c> (<see cref="ModelIdLayout"/>).</param>
    /// <param name="state">The model's state.</param>
    /// <param name="arguments">The step's shape and the model's settings.</param>
    /// <param name="validTokens">One int: the valid tokens (rows past it are padding); empty for all rows.</param>
    /// <param name="loadBalanceLosses">One loss per layer, or empty for zeros.</param>
    /// <param name="routerZLosses">One z-loss per layer, or empty for zeros.</param>
    /// <typeparam name="TIds">The ids' integer type (<see cref="IModelIds"/>).</typeparam>
    internal static void Kernel<TIds>(
        TIds ids, ModelStateViews state, ModelStepArguments arguments, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
        where TIds : struct, IModelIds
    {
        var bins = SharedMemory.Allocate<int>(MaxExperts + 1);
        var partials = SharedMemory.Allocate<long>(RoutingRecordKernel.PreferredGroupSize);
        var counting = state.Control[CountingBuffer];
        var countingGroups = arguments.Layers * arguments.GroupsPerLayer;
        if (Grid.IdxX < countingGroups)
        {
            Count(ids, state, arguments, ValidTokens(arguments, validTokens), counting, bins, partials);
        }
        else
        {
            Fold(state, arguments, Grid.IdxX - countingGroups, 1 - counting, bins, partials);
        }

        Finish(state, arguments, validTokens, loadBalanceLosses, routerZLosses, counting, countingGroups > 0, partials);
    }

    /// <summary>The valid tokens: the device count clamped to <c>[0, Tokens]</c>, or every row.</summary>
    private static int ValidTokens(ModelStepArguments arguments, ArrayView<int> validTokens)
    {
        if (validTokens.Length == 0)
        {
            return arguments.Tokens;
        }

        var valid = validTokens[0];
        return valid < 0 ? 0 : valid > arguments.Tokens ? arguments.Tokens : valid;
    }

    /// <summary>This group's grid-stride share of its layer's ids into the layer's counting buffer, as the single-layer record counts them.</summary>
    private static void Count<TIds>(TIds ids, ModelStateViews state, ModelStepArguments arguments, int tokens, int buffer, ArrayView<int> bins, ArrayView<long> partials)
        where TIds : struct, IModelIds
    {
        var thread = Group.IdxX;
        var groupSize = Group.DimX;
        var experts = arguments.Experts;
        var layer = Grid.IdxX / arguments.GroupsPerLayer;
        var share = Grid.IdxX % arguments.GroupsPerLayer;
        var length = (long)tokens * arguments.TopK;
        var layerFirst = layer * arguments.LayerStride;
        for (var e = thread; e <= experts; e += groupSize)
        {
            bins[e] = 0;
        }

        Group.Barrier();
        var threads = (long)arguments.GroupsPerLayer * groupSize;
        var topK = arguments.TopK;
        var tokenStride = arguments.TokenStride;
        var runId = -1;
        var run = 0;
        if (tokenStride == topK)
        {
            // Rows side by side: the layer's ids are one run of memory, read without a division per id.
            for (var i = (long)share * groupSize + thread; i < length; i += threads)
            {
                Runs.Count(bins, experts, ids[layerFirst + i], ref runId, ref run);
            }
        }
        else
        {
            for (var i = (long)share * groupSize + thread; i < length; i += threads)
            {
                Runs.Count(bins, experts, ids[layerFirst + ModelIdLayout.Offset(i, topK, tokenStride)], ref runId, ref run);
            }
        }

        Runs.Flush(bins, experts, runId, run);
        Group.Barrier();

        var first = (long)layer * BatchHistogramLength + buffer * BufferLength + share % arguments.Copies * experts;
        for (var e = thread; e < experts; e += groupSize)
        {
            var count = bins[e];
            if (count != 0)
            {
                Atomic.Add(ref state.BatchHistogram[first + e], (ulong)count);
            }
        }

        long invalid = bins[experts];
        long paddedTokens = 0;
        if (invalid != 0)
        {
            // Not empty here: an id was counted, so the layer has a row.
            var layerEnd = layerFirst + ((tokens - 1) * tokenStride) + topK;
            int emptySlots = 0, padded = 0;
            for (var i = (long)share * groupSize + thread; i < length; i += threads)
            {
                Padding.CheckRows(ids, layerFirst, layerEnd, i, topK, tokenStride, ref emptySlots, ref padded);
            }

            invalid -= GroupReduction.Sum(emptySlots, partials);
            paddedTokens = GroupReduction.Sum(padded, partials);
        }

        if (thread == 0 && invalid != 0)
        {
            Atomic.Add(ref state.BatchInvalid[layer * BatchBuffers + buffer], (ulong)invalid);
        }

        if (thread == 0 && paddedTokens != 0)
        {
            Atomic.Add(ref state.BatchPaddedTokens[layer * BatchBuffers + buffer], (ulong)paddedTokens);
        }
    }

    /// <summary>
    /// Folds <paramref name="layer"/>'s pending step from <paramref name="buffer"/>, when there is one:
    /// its counts into the window ring and the window's load, then the single-layer fold.
    /// </summary>
    private static void Fold(ModelStateViews state, ModelStepArguments arguments, int layer, int buffer, ArrayView<int> bins, ArrayView<long> partials)
    {
        if (state.Control[Field(buffer, Recorded)] == 0)
        {
            return;
        }

        var experts = arguments.Experts;
        var copies = state.Control[Field(buffer, Copies)];
        var first = (long)layer * BatchHistogramLength + buffer * BufferLength;
        var ringRow = ((long)state.Control[WindowPosition] * arguments.Layers + layer) * experts;
        var loadRow = (long)layer * experts;
        for (var e = Group.IdxX; e < experts; e += Group.DimX)
        {
            var count = 0UL;
            for (var copy = 0; copy < copies; copy++)
            {
                count += state.BatchHistogram[first + copy * experts + e];
            }

            var leaving = state.WindowRing[ringRow + e];
            state.WindowRing[ringRow + e] = (uint)count;
            state.WindowLoad[loadRow + e] = state.WindowLoad[loadRow + e] - leaving + count;
        }

        Group.Barrier();
        var losses = ((long)buffer * arguments.Layers + layer) * 2;
        var record = new RecordArguments
        {
            Experts = experts,
            Tokens = state.Control[Field(buffer, Tokens)],
            TopK = state.Control[Field(buffer, TopK)],
            ExpertCapacity = arguments.ExpertCapacity,
            SlotsPerExpert = arguments.SlotsPerExpert,
            LoadBalanceLoss = state.PendingLosses[losses],
            RouterZLoss = state.PendingLosses[losses + 1],
            UtilizationDecay = arguments.UtilizationDecay,
            Buffer = buffer,
            Copies = copies,
        };
        RoutingRecordKernel.Fold(state.Layer(layer, experts), record, bins, partials);
    }

    /// <summary>
    /// A loss read from the caller's device array, 0 where it is NaN or infinite: the host cannot
    /// refuse a value it never reads, and one such loss would make the layer's average non-finite
    /// for the rest of the run (the host overloads refuse it instead).
    /// </summary>
    public static float FiniteOrZero(float loss) => float.IsNaN(loss) || float.IsInfinity(loss) ? 0f : loss;

    /// <summary>
    /// Whether any layer of the step just counted into <paramref name="counting"/> holds a token: a
    /// valid row that is not padding. Run by the launch's last group, which then clears the padding
    /// counts of a step it leaves out (its ids were all empty slots, so nothing else was counted), as a
    /// fold would have. The counts are read by atomics: the other groups added them in L2, and this
    /// group's cache may hold a line of them from its own fold.
    /// </summary>
    private static bool HoldsToken(ModelStateViews state, ModelStepArguments arguments, int validTokens, int counting, ArrayView<long> partials)
    {
        // No early return for a step without valid tokens (no layer's padded count is below 0, so it holds none):
        // that return, before the barriers below, corrupted the host's heap under PoCL's default work-group method
        // (docs/performance.md, OpenCL on PoCL 5.0; why that return and not the kernel's others is not known).
        var layers = arguments.Layers;
        var holding = 0;
        for (var layer = Group.IdxX; layer < layers; layer += Group.DimX)
        {
            if (Atomic.Add(ref state.BatchPaddedTokens[layer * BatchBuffers + counting], 0UL) < (ulong)validTokens)
            {
                holding = 1;
            }
        }

        Group.Barrier();
        if (GroupReduction.Sum(holding, partials) != 0)
        {
            return true;
        }

        for (var layer = Group.IdxX; layer < layers; layer += Group.DimX)
        {
            state.BatchPaddedTokens[layer * BatchBuffers + counting] = 0;
        }

        return false;
    }

    /// <summary>
    /// Takes a ticket; the last group of the launch records what the counting buffer now holds (nothing,
    /// with <see cref="ModelStepArguments.SkipEmptySteps"/>, for a step in which no layer holds a token),
    /// marks the folded buffer free, moves the window on past a folded step and swaps the buffers.
    /// </summary>
    private static void Finish(
        ModelStateViews state, ModelStepArguments arguments, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses, int counting, bool step, ArrayView<long> partials)
    {
        var thread = Group.IdxX;
        Group.Barrier();

        // Every thread fences, not thread 0 alone: ILGPU's OpenCL backend emits a fence as a work-group barrier
        // with device scope, which every work-item of the group must reach.
        MemoryFence.DeviceLevel();
        if (thread == 0)
        {
            partials[0] = Atomic.Add(ref state.Control[Ticket], 1);
        }

        Group.Barrier();
        if (partials[0] != Grid.DimX - 1)
        {
            return;
        }

        var layers = arguments.Layers;
        var valid = ValidTokens(arguments, validTokens);
        var recorded = step && (arguments.SkipEmptySteps == 0 || HoldsToken(state, arguments, valid, counting, partials));
        for (var layer = thread; layer < layers; layer += Group.DimX)
        {
            var at = ((long)counting * layers + layer) * 2;
            state.PendingLosses[at] = step && loadBalanceLosses.Length > 0 ? FiniteOrZero(loadBalanceLosses[layer]) : 0f;
            state.PendingLosses[at + 1] = step && routerZLosses.Length > 0 ? FiniteOrZero(routerZLosses[layer]) : 0f;
        }

        if (thread != 0)
        {
            return;
        }

        var folded = 1 - counting;
        if (state.Control[Field(folded, Recorded)] != 0)
        {
            var position = state.Control[WindowPosition] + 1;
            state.Control[WindowPosition] = position == arguments.Window ? 0 : position;
            state.Control[Field(folded, Recorded)] = 0;
        }

        state.Control[Field(counting, Recorded)] = recorded ? 1 : 0;
        state.Control[Field(counting, Tokens)] = valid;
        state.Control[Field(counting, TopK)] = arguments.TopK;
        state.Control[Field(counting, Copies)] = arguments.Copies;
        state.Control[CountingBuffer] = folded;
        state.Control[Ticket] = 0;
    }
}
