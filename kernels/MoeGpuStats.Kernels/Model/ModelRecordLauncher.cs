using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using static MoeGpuStats.Kernels.RoutingStateLayout;
using static System.FormattableString;

namespace MoeGpuStats.Kernels.Model;

/// <summary>
/// The model record kernel loaded on one accelerator: sizes a step's grid (<see cref="Step"/>),
/// checks a launch's arguments against the state, and enqueues it.
/// </summary>
/// <remarks>
/// A layer gets a counting group per <see cref="RecordKernelPolicy.DefaultIdsPerThread"/> ids per
/// thread, and every layer as many, so that all groups (and the layers' folding groups) fit the
/// one wave the accelerator holds at once, as the single-layer grid rule (<see cref="CountingGrid"/>).
/// </remarks>
internal sealed class ModelRecordLauncher
{
    private readonly Accelerator _accelerator;
    private readonly LaunchGate _gate;
    private readonly Action<AcceleratorStream, KernelConfig, Int32Ids, ModelStateViews, ModelStepArguments, ArrayView<int>, ArrayView<float>, ArrayView<float>> _int32;
    private Action<AcceleratorStream, KernelConfig, Int64Ids, ModelStateViews, ModelStepArguments, ArrayView<int>, ArrayView<float>, ArrayView<float>>? _int64;
    private Action<AcceleratorStream, KernelConfig, Int16Ids, ModelStateViews, ModelStepArguments, ArrayView<int>, ArrayView<float>, ArrayView<float>>? _int16;
    private readonly int _groupSize;
    private readonly int _maxGroups;

    /// <summary>Loads the kernel for int32 ids on <paramref name="accelerator"/> (int64's and int16's at their first step).</summary>
    /// <param name="accelerator">The accelerator.</param>
    /// <param name="boundGroupsPerMultiprocessor">
    /// 0 (the library's choice): the kernel as ILGPU compiles it. Above 0, on CUDA: launch bounds that
    /// make that many groups fit on a multiprocessor (fewer registers, perhaps spills; see
    /// docs/performance.md) on the int32 kernel, for the device check to compare; ignored elsewhere.
    /// </param>
    /// <exception cref="ArgumentNullException"><paramref name="accelerator"/> is null.</exception>
    public ModelRecordLauncher(Accelerator accelerator, int boundGroupsPerMultiprocessor = 0)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        _accelerator = accelerator;
        _gate = new LaunchGate(accelerator);
        _groupSize = RoutingRecordKernel.GroupSize(accelerator);
        Kernel kernel;
        if (boundGroupsPerMultiprocessor > 0 && CudaLaunchBounds.AppliesTo(accelerator) && accelerator is CudaAccelerator cuda)
        {
            kernel = CudaLaunchBounds.Load(cuda, KernelPtx.ModelRecordKernelMethod, _groupSize, boundGroupsPerMultiprocessor);
            _int32 = kernel.CreateLauncherDelegate<Action<AcceleratorStream, KernelConfig, Int32Ids, ModelStateViews, ModelStepArguments, ArrayView<int>, ArrayView<float>, ArrayView<float>>>();
        }
        else
        {
            _int32 = Load<Int32Ids>();
            kernel = _int32.GetKernel();
        }

        // The int32 kernel sizes every step's grid: one wave of it is what the grid rule aims at. The
        // int64 and int16 kernels differ in their loads only, and no group waits for another, so a
        // grid a little past their wave is slower, never wrong.
        var resident = accelerator.EstimateMaxActiveGroupsPerMultiprocessor(kernel, _groupSize, 0);
        _maxGroups = Math.Max(1, accelerator.NumMultiprocessors) * Math.Max(1, resident);
    }

    /// <summary><paramref name="shape"/> with the counting groups per layer and the copies for a step of its tokens and top-k.</summary>
    public ModelStepArguments Step(ModelStepArguments shape)
    {
        var ids = (long)shape.Tokens * shape.TopK;
        var idsPerGroup = (long)_groupSize * RecordKernelPolicy.DefaultIdsPerThread;
        var wanted = (ids + idsPerGroup - 1) / idsPerGroup;
        var room = Math.Max(1, (_maxGroups - shape.Layers) / shape.Layers);
        shape.GroupsPerLayer = (int)Math.Clamp(wanted, 1, room);
        shape.Copies = Math.Clamp(shape.GroupsPerLayer / RecordKernelPolicy.DefaultGroupsPerCopy, 1, CopiesHeld(shape.Experts));
        return shape;
    }

    /// <summary><paramref name="shape"/> for a launch that only folds the pending step.</summary>
    public static ModelStepArguments FoldOnly(ModelStepArguments shape)
    {
        shape.GroupsPerLayer = 0;
        shape.Tokens = 0;
        shape.Copies = 1;
        return shape;
    }

    /// <summary>Enqueues one launch on <paramref name="stream"/>; does not wait.</summary>
    /// <typeparam name="TIds"><see cref="Int32Ids"/>, <see cref="Int64Ids"/> or <see cref="Int16Ids"/>.</typeparam>
    /// <exception cref="ArgumentOutOfRangeException">A count of the arguments is out of range.</exception>
    /// <exception cref="ArgumentException">A view is too short for the arguments.</exception>
    public void Launch<TIds>(
        AcceleratorStream stream, TIds ids, ModelStateViews state, ModelStepArguments arguments, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
        where TIds : struct, IModelIds
    {
        Check(ids.Length, state, arguments, loadBalanceLosses, routerZLosses);
        var groups = (arguments.GroupsPerLayer + 1) * arguments.Layers;
        var kernel = KernelFor<TIds>();
        using var held = _gate.Enter();
        kernel(stream, new KernelConfig(groups, _groupSize), ids, state, arguments, validTokens, loadBalanceLosses, routerZLosses);
    }

    /// <summary>The loaded kernel for <typeparamref name="TIds"/>, loaded now if it is the first step of that type.</summary>
    private Action<AcceleratorStream, KernelConfig, TIds, ModelStateViews, ModelStepArguments, ArrayView<int>, ArrayView<float>, ArrayView<float>> KernelFor<TIds>()
        where TIds : struct, IModelIds
    {
        object kernel = typeof(TIds) == typeof(Int32Ids) ? _int32
            : typeof(TIds) == typeof(Int64Ids) ? _int64 ??= Load<Int64Ids>()
            : typeof(TIds) == typeof(Int16Ids) ? _int16 ??= Load<Int16Ids>()
            : throw new ArgumentException(Invariant($"{typeof(TIds).Name}: the model kernel reads Int32Ids, Int64Ids or Int16Ids."), nameof(TIds));
        return (Action<AcceleratorStream, KernelConfig, TIds, ModelStateViews, ModelStepArguments, ArrayView<int>, ArrayView<float>, ArrayView<float>>)kernel;
    }

    private Action<AcceleratorStream, KernelConfig, TIds, ModelStateViews, ModelStepArguments, ArrayView<int>, ArrayView<float>, ArrayView<float>> Load<TIds>()
        where TIds : struct, IModelIds =>
        _accelerator.LoadKernel<TIds, ModelStateViews, ModelStepArguments, ArrayView<int>, ArrayView<float>, ArrayView<float>>(ModelRecordKernel.Kernel);

    /// <summary>
    /// Everything the kernel indexes, checked on the host so that no launch reads or writes outside a
    /// view (the valid-token view is read at index 0 only when it is not empty).
    /// </summary>
    internal static void Check(long ids, ModelStateViews state, ModelStepArguments arguments, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
    {
        var layers = (long)arguments.Layers;
        var experts = arguments.Experts;
        if (layers < 1 || experts is < 1 or > MaxExperts || arguments.Window < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(arguments), Invariant($"arguments: layers {layers} (at least 1), experts {experts} (1 to {MaxExperts}), window {arguments.Window} (at least 1)."));
        }

        if (arguments.GroupsPerLayer < 0 || arguments.Copies < 1 || arguments.Copies > CopiesHeld(experts) || arguments.Tokens < 0 || arguments.TopK < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(arguments), Invariant($"arguments: groups per layer {arguments.GroupsPerLayer}, copies {arguments.Copies} (1 to {CopiesHeld(experts)}), tokens {arguments.Tokens}, top-k {arguments.TopK}."));
        }

        var perLayer = layers * experts;
        if (state.Blocks.Length < layers || state.BatchHistogram.Length < layers * BatchHistogramLength || state.BatchInvalid.Length < layers * BatchBuffers
            || state.BatchPaddedTokens.Length < layers * BatchBuffers || state.UtilizationSums.Length < perLayer || state.TokenCounts.Length < perLayer
            || state.Utilization.Length < perLayer || state.DecayedUtilization.Length < perLayer || state.VarianceHistory.Length < layers * VarianceWindow
            || state.WindowRing.Length < arguments.Window * perLayer || state.WindowLoad.Length < perLayer
            || state.Control.Length < ModelStateLayout.ControlLength || state.PendingLosses.Length < BatchBuffers * layers * 2)
        {
            throw new ArgumentException(Invariant($"The model state's views are too short for {layers} layers of {experts} experts and a window of {arguments.Window}."), nameof(state));
        }

        if (arguments.GroupsPerLayer == 0)
        {
            return;
        }

        if (arguments.TopK < 1 || arguments.TokenStride < arguments.TopK
            || !ModelIdLayout.Supported(layers, arguments.Tokens, arguments.TopK, arguments.LayerStride, arguments.TokenStride)
            || ModelIdLayout.StepExtent(layers, arguments.LayerStride, arguments.Tokens, arguments.TopK, arguments.TokenStride) is not { } extent || ids < extent)
        {
            throw new ArgumentException(
                Invariant($"The ids ({ids}) do not hold {layers} layers of {arguments.Tokens} tokens × top-k {arguments.TopK} at a layer stride of {arguments.LayerStride} and a token stride of {arguments.TokenStride}, rows apart."), nameof(ids));
        }

        if (loadBalanceLosses.Length is > 0 && loadBalanceLosses.Length < layers || routerZLosses.Length is > 0 && routerZLosses.Length < layers)
        {
            throw new ArgumentException(Invariant($"Per-layer losses need {layers} values, or none."), nameof(loadBalanceLosses));
        }
    }
}
