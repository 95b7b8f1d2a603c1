using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.CompilerServices;
using ILGPU.Backends;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using static System.FormattableString;

namespace MoeGpuStats.Kernels;

/// <summary>
/// Loads a kernel on CUDA from ILGPU's PTX with launch bounds (<c>.maxntid</c>, <c>.minnctapersm</c>)
/// added, which ILGPU 1.5.3 cannot emit. Without them, CUDA 13's compiler gave the record kernel 37
/// registers per thread (CUDA 11.8's: 32), so 6 groups of 256 threads fit on a multiprocessor
/// instead of 8; asked for 8, the same compiler fits it in 32 registers without spilling (the
/// GPU machine's ptxas, 2026-11-26).
/// </summary>
/// <remarks>
/// ILGPU builds a loadable kernel only from its own compiled form, whose constructor and entry point
/// are internal: they are reached by reflection, for ILGPU 1.5.3 (Directory.Packages.props pins it).
/// Where they are missing (<see cref="Supported"/> is false) kernels load as ILGPU compiles them;
/// the device engine then logs a warning and says so (<c>DeviceRoutingStats.RecordKernelHasLaunchBounds</c>).
/// </remarks>
internal static class CudaLaunchBounds
{
    private static readonly ConstructorInfo? CompiledKernelConstructor = typeof(PTXCompiledKernel)
        .GetConstructors(BindingFlags.NonPublic | BindingFlags.Instance)
        .SingleOrDefault(constructor => constructor.GetParameters() is [_, _, _, { ParameterType: var last }] && last == typeof(string));

    private static readonly PropertyInfo? EntryPointProperty =
        typeof(CompiledKernel).GetProperty("EntryPoint", BindingFlags.NonPublic | BindingFlags.Instance);

    private static readonly ConditionalWeakTable<Accelerator, ConcurrentDictionary<(MethodInfo Kernel, int GroupSize, int GroupsPerMultiprocessor), Kernel>> Loaded = new();

    /// <summary>PTX's performance-tuning directives that bound a launch.</summary>
    private static readonly string[] LaunchBoundDirectives = [".maxntid ", ".reqntid ", ".minnctapersm ", ".maxnctapersm ", ".maxnreg "];

    /// <summary>Whether this ILGPU has the internals that <see cref="Load"/> needs.</summary>
    public static bool Supported => CompiledKernelConstructor is not null && EntryPointProperty is not null;

    /// <summary>The ILGPU internals that <see cref="Load"/> needs and this ILGPU lacks, for a log; empty when <see cref="Supported"/>.</summary>
    public static string Missing => string.Join(
        " and ",
        new[]
        {
            CompiledKernelConstructor is null ? Invariant($"{nameof(PTXCompiledKernel)}'s internal constructor (context, entry point, info, PTX)") : null,
            EntryPointProperty is null ? Invariant($"{nameof(CompiledKernel)}.EntryPoint") : null,
        }.OfType<string>());

    /// <summary>Whether the record kernels load on <paramref name="accelerator"/> with launch bounds: on CUDA, where this ILGPU allows it.</summary>
    public static bool AppliesTo(Accelerator accelerator) => accelerator is CudaAccelerator && Supported;

    /// <summary>
    /// <paramref name="ptx"/> with its entry limited to groups of <paramref name="groupSize"/> threads,
    /// as many of which as <paramref name="threadsPerMultiprocessor"/> allows must fit on a
    /// multiprocessor at once.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="ptx"/> has no entry with a body, or its entry has launch bounds already.</exception>
    public static string Add(string ptx, int groupSize, int threadsPerMultiprocessor)
    {
        // The directives go between the entry's parameter list and its body.
        var entry = ptx.IndexOf(".entry ", StringComparison.Ordinal);
        var body = entry < 0 ? -1 : ptx.IndexOf("\n{", entry, StringComparison.Ordinal);
        if (body < 0)
        {
            throw new ArgumentException("The PTX has no kernel entry with a body.", nameof(ptx));
        }

        // An ILGPU that emits launch bounds itself would otherwise get a second, possibly contradicting set.
        var header = ptx.AsSpan(entry, body - entry);
        foreach (var directive in LaunchBoundDirectives)
        {
            if (header.Contains(directive, StringComparison.Ordinal))
            {
                throw new ArgumentException(Invariant($"The PTX's entry has launch bounds already ({directive.Trim()})."), nameof(ptx));
            }
        }

        var groupsPerMultiprocessor = Math.Max(1, threadsPerMultiprocessor / groupSize);
        return ptx.Insert(body, Invariant($"\n.maxntid {groupSize}, 1, 1\n.minnctapersm {groupsPerMultiprocessor}"));
    }

    /// <summary>
    /// <paramref name="kernel"/> (an explicitly grouped kernel method) compiled for
    /// <paramref name="accelerator"/> with launch bounds, loaded once per accelerator, group size and
    /// bound: ILGPU's own cache does not hold kernels loaded this way, and every engine would
    /// otherwise compile it again and load another module.
    /// </summary>
    /// <param name="accelerator">The CUDA accelerator.</param>
    /// <param name="kernel">The kernel method.</param>
    /// <param name="groupSize">Threads per group.</param>
    /// <param name="groupsPerMultiprocessor">Groups that must fit on a multiprocessor at once; 0 for full occupancy.</param>
    public static Kernel Load(CudaAccelerator accelerator, MethodInfo kernel, int groupSize, int groupsPerMultiprocessor = 0) =>
        Loaded.GetOrCreateValue(accelerator).GetOrAdd((kernel, groupSize, groupsPerMultiprocessor), key =>
        {
            var compiled = KernelPtx.Compile(accelerator.Context, accelerator.Capabilities, accelerator.Architecture, accelerator.InstructionSet, KernelPtx.EntryPoint(key.Kernel));
            var threads = key.GroupsPerMultiprocessor > 0 ? key.GroupsPerMultiprocessor * key.GroupSize : accelerator.MaxNumThreadsPerMultiprocessor;
            return accelerator.LoadKernel(WithPtx(compiled, Add(compiled.PTXAssembly, key.GroupSize, threads)));
        });

    /// <summary><paramref name="compiled"/> with <paramref name="ptx"/> as its assembly: same entry point, parameters and kernel information.</summary>
    internal static PTXCompiledKernel WithPtx(PTXCompiledKernel compiled, string ptx)
    {
        if (!Supported)
        {
            throw new NotSupportedException("This ILGPU version lacks the internals that loading PTX with launch bounds needs.");
        }

        return (PTXCompiledKernel)CompiledKernelConstructor!.Invoke([compiled.Context, EntryPointProperty!.GetValue(compiled), compiled.Info, ptx]);
    }
}
