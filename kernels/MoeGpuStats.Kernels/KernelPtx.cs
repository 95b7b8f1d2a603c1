using System.Reflection;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using MoeGpuStats.Kernels.Model;
using static System.FormattableString;

namespace MoeGpuStats.Kernels;

/// <summary>
/// The PTX that ILGPU generates for the kernels, without a GPU: what CI checks, and what NVIDIA's
/// <c>ptxas -v</c> and <c>cuobjdump -sass</c> read to show registers, shared memory and the
/// instructions (<c>MoeGpuStats.Bench --emit-ptx DIR</c> writes it out).
/// </summary>
internal static class KernelPtx
{
    /// <summary>The kernels' names, as <see cref="Generate(string, CudaArchitecture, CudaInstructionSet, int)"/> takes them.</summary>
    public static IReadOnlyList<string> Kernels { get; } =
        [nameof(RoutingRecordKernel), QuadLoadRecordKernel, nameof(UtilizationQueryKernel), nameof(ModelRecordKernel), ModelRecordKernelInt64, ModelRecordKernelInt16,
            nameof(LayerBalanceKernel), LayerSortKernel, nameof(RecentLoadKernel)];

    /// <summary>The model step kernel for int64 ids, as <see cref="Generate(string, CudaArchitecture, CudaInstructionSet, int)"/> takes it.</summary>
    public const string ModelRecordKernelInt64 = nameof(ModelRecordKernel) + "." + nameof(Int64Ids);

    /// <summary>The model step kernel for int16 ids, as <see cref="Generate(string, CudaArchitecture, CudaInstructionSet, int)"/> takes it.</summary>
    public const string ModelRecordKernelInt16 = nameof(ModelRecordKernel) + "." + nameof(Int16Ids);

    /// <summary>The balance's sort (<see cref="LayerBalanceKernel.SortKernel"/>), as <see cref="Generate(string, CudaArchitecture, CudaInstructionSet, int)"/> takes it.</summary>
    public const string LayerSortKernel = nameof(LayerBalanceKernel) + "." + nameof(LayerBalanceKernel.SortKernel);

    /// <summary>The record kernel with <see cref="HistogramCounting.QuadLoadRuns"/>, as <see cref="Generate(string, CudaArchitecture, CudaInstructionSet, int)"/> takes it.</summary>
    public const string QuadLoadRecordKernel = nameof(RoutingRecordKernel) + "." + nameof(HistogramCounting.QuadLoadRuns);

    /// <summary>
    /// Compiles <paramref name="kernel"/> with ILGPU's default (O1) pipeline, as the library's contexts
    /// do, and gives the record kernels the launch bounds they are loaded with on CUDA (<see cref="CudaLaunchBounds"/>).
    /// </summary>
    /// <param name="kernel">One of <see cref="Kernels"/>.</param>
    /// <param name="architecture">The GPU architecture.</param>
    /// <param name="instructionSet">The PTX version.</param>
    /// <param name="threadsPerMultiprocessor">The architecture's resident threads per multiprocessor (2,048 on Hopper).</param>
    /// <exception cref="ArgumentException"><paramref name="kernel"/> is not one of <see cref="Kernels"/>.</exception>
    public static string Generate(string kernel, CudaArchitecture architecture, CudaInstructionSet instructionSet, int threadsPerMultiprocessor = 2048) =>
        Generate(EntryPoint(kernel), kernel is nameof(RoutingRecordKernel) or QuadLoadRecordKernel, architecture, instructionSet, threadsPerMultiprocessor);

    /// <summary>As <see cref="Generate(string, CudaArchitecture, CudaInstructionSet, int)"/>, for any explicitly grouped kernel method.</summary>
    internal static string Generate(MethodInfo kernel, bool launchBounds, CudaArchitecture architecture, CudaInstructionSet instructionSet, int threadsPerMultiprocessor = 2048) =>
        Generate(EntryPoint(kernel), launchBounds, architecture, instructionSet, threadsPerMultiprocessor);

    private static string Generate(EntryPointDescription kernel, bool launchBounds, CudaArchitecture architecture, CudaInstructionSet instructionSet, int threadsPerMultiprocessor)
    {
        using var context = Context.Create(builder => builder.Default());
        var compiled = Compile(context, new CudaCapabilityContext(architecture), architecture, instructionSet, kernel);
        return launchBounds
            ? CudaLaunchBounds.Add(compiled.PTXAssembly, RoutingRecordKernel.PreferredGroupSize, threadsPerMultiprocessor)
            : compiled.PTXAssembly;
    }

    /// <summary><paramref name="kernel"/> compiled by ILGPU's PTX backend, without NVVM.</summary>
    internal static PTXCompiledKernel Compile(Context context, CudaCapabilityContext capabilities, CudaArchitecture architecture, CudaInstructionSet instructionSet, EntryPointDescription kernel)
    {
        using var backend = new PTXBackend(context, capabilities, architecture, instructionSet, nvvmAPI: null);
        return (PTXCompiledKernel)backend.Compile(kernel, KernelSpecialization.Empty);
    }

    /// <summary>The kernel's entry point, for any ILGPU backend.</summary>
    internal static EntryPointDescription EntryPoint(string kernel) => kernel switch
    {
        nameof(LayerBalanceKernel) => EntryPointDescription.FromImplicitlyGroupedKernel(
            new Action<Index1D, ArrayView<ulong>, int, ArrayView<int>, int, ArrayView<ulong>, ArrayView<LayerLoad>>(LayerBalanceKernel.Kernel).Method),
        nameof(RecentLoadKernel) => EntryPointDescription.FromImplicitlyGroupedKernel(
            new Action<Index1D, ArrayView<uint>, ArrayView<int>, ArrayView<RoutingStateBlock>, int, int, ArrayView<ulong>, ArrayView<ulong>>(RecentLoadKernel.Kernel).Method),
        _ => EntryPointDescription.FromExplicitlyGroupedKernel(Method(kernel)),
    };

    /// <summary>The entry point of <paramref name="kernel"/> (an explicitly grouped kernel method), for any ILGPU backend.</summary>
    internal static EntryPointDescription EntryPoint(MethodInfo kernel) => EntryPointDescription.FromExplicitlyGroupedKernel(kernel);

    /// <summary>The record kernel with <typeparamref name="TCounting"/>.</summary>
    internal static MethodInfo RecordKernel<TCounting>()
        where TCounting : struct, IHistogramCounting =>
        new Action<ArrayView<int>, RoutingStateViews, RecordArguments, RecordArguments>(RoutingRecordKernel.Kernel<TCounting>).Method;

    /// <summary>The whole-model step kernel for int32 ids.</summary>
    internal static MethodInfo ModelRecordKernelMethod => ModelRecordKernelFor<Int32Ids>();

    /// <summary>The whole-model step kernel for <typeparamref name="TIds"/>.</summary>
    internal static MethodInfo ModelRecordKernelFor<TIds>()
        where TIds : struct, IModelIds =>
        new Action<TIds, ModelStateViews, ModelStepArguments, ArrayView<int>, ArrayView<float>, ArrayView<float>>(ModelRecordKernel.Kernel).Method;

    private static MethodInfo Method(string kernel) => kernel switch
    {
        nameof(RoutingRecordKernel) => RecordKernel<ThreadRunCounting>(),
        QuadLoadRecordKernel => RecordKernel<QuadLoadRunCounting>(),
        nameof(UtilizationQueryKernel) => new Action<RoutingStateViews, int, ArrayView<UtilizationQueryResult>>(UtilizationQueryKernel.Kernel).Method,
        nameof(ModelRecordKernel) => ModelRecordKernelMethod,
        ModelRecordKernelInt64 => ModelRecordKernelFor<Int64Ids>(),
        ModelRecordKernelInt16 => ModelRecordKernelFor<Int16Ids>(),
        LayerSortKernel => new Action<ArrayView<ulong>, int, int, ArrayView<LayerLoad>>(LayerBalanceKernel.SortKernel).Method,
        _ => throw new ArgumentException(Invariant($"'{kernel}' is not one of {string.Join(", ", Kernels)}."), nameof(kernel)),
    };
}
