using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using Microsoft.Extensions.Logging;
using MoeGpuStats.Engines;
using static System.FormattableString;

namespace MoeGpuStats.Device;

/// <summary>
/// The one rule for the best engine present: CUDA, then OpenCL, then the managed engine; for a whole model, and for
/// anything the C API's <c>"auto"</c> makes, CUDA, then the managed engine (<see cref="ModelBestFirst"/>,
/// <see cref="ForeignMemoryBestFirst"/>). <see cref="RoutingStats.Create"/>, <see cref="ModelRoutingStats.Create(ModelRoutingStatsOptions, Microsoft.Extensions.Logging.ILogger?)"/>,
/// the CLI and the C API all follow it; ILGPU's CPU accelerator runs only when asked for (<c>cpu</c>), as it is slower
/// than the managed engine.
/// </summary>
internal static class AcceleratorSelection
{
    /// <summary>The accelerators tried, in order, before the managed engine.</summary>
    public static readonly AcceleratorType[] BestFirst = [AcceleratorType.Cuda, AcceleratorType.OpenCL];

    /// <summary>
    /// The accelerators tried for a whole model: CUDA alone. OpenCL runs a model only when named (<c>opencl</c>), as the
    /// model engine has run on OpenCL only on PoCL's CPU device (docs/performance.md).
    /// </summary>
    public static readonly AcceleratorType[] ModelBestFirst = [AcceleratorType.Cuda];

    /// <summary>
    /// The accelerators the C API's <c>"auto"</c> tries for one layer, as for a model: CUDA alone. Its callers hand it
    /// memory of their own: from C, OpenCL memory would be a cl_mem of the caller's context, which the OpenCL standard
    /// does not let the library's kernels read (PoCL does), and Python passes no cl_mem at all. OpenCL runs there only
    /// when named.
    /// </summary>
    public static readonly AcceleratorType[] ForeignMemoryBestFirst = [AcceleratorType.Cuda];

    /// <summary>The engines by name, as <see cref="RoutingStats.AcceleratorVariable"/>, the CLI and the C API take them (the C API adds <c>auto</c>).</summary>
    public static readonly string[] Names = ["cuda", "opencl", "cpu", "managed"];

    /// <summary>
    /// The accelerator types to try for <paramref name="choice"/> (a lower-case name of <see cref="Names"/>,
    /// or empty for the best present: <paramref name="best"/>, <see cref="BestFirst"/> by default); empty for <c>managed</c>;
    /// null for a name not in <see cref="Names"/>.
    /// </summary>
    public static AcceleratorType[]? Order(string choice, AcceleratorType[]? best = null) => choice switch
    {
        "" => best ?? BestFirst,
        "cuda" => [AcceleratorType.Cuda],
        "opencl" => [AcceleratorType.OpenCL],
        "cpu" => [AcceleratorType.CPU],
        "managed" => [],
        _ => null,
    };

    public static RoutingStats Create(string? requested, RoutingStatsOptions options, ILogger? logger) =>
        Choose(
            requested,
            (accelerator, owned) => new RoutingStats(new DeviceRoutingEngine(new DeviceRoutingStats(accelerator, options, stream: null, logger), owned)),
            () => new RoutingStats(options));

    /// <summary>
    /// The engine <paramref name="requested"/> names (<c>cuda</c>, <c>opencl</c>, <c>cpu</c>, <c>managed</c>),
    /// or the best present of <paramref name="best"/> (<see cref="BestFirst"/> by default) when null or empty:
    /// <paramref name="onDevice"/> with the accelerator and what frees it with the engine, or <paramref name="managed"/>.
    /// </summary>
    /// <remarks>
    /// ILGPU compiles its kernels at run time; a program that cannot generate code (native AOT, or a .NET 10 file-based
    /// program, which sets PublishAot: <see cref="RuntimeFeature.IsDynamicCodeSupported"/> false) has no accelerator
    /// ILGPU can run, so the best present there is the managed engine, and a named accelerator is refused saying why.
    /// <paramref name="dynamicCode"/>, null but in tests, stands for that flag.
    /// </remarks>
    /// <exception cref="InvalidOperationException">An unknown name, or an accelerator that is not present or cannot run here.</exception>
    public static T Choose<T>(string? requested, Func<Accelerator, IDisposable, T> onDevice, Func<T> managed, AcceleratorType[]? best = null, bool? dynamicCode = null)
    {
        var choice = requested?.Trim().ToLowerInvariant() ?? "";
        var order = Order(choice, best) ?? throw new InvalidOperationException(
            Invariant($"{RoutingStats.AcceleratorVariable}='{requested}' is not one of {string.Join(", ", Names)}."));
        if (order.Length == 0)
        {
            return managed();
        }

        if (!(dynamicCode ?? RuntimeFeature.IsDynamicCodeSupported))
        {
            return string.IsNullOrEmpty(choice)
                ? managed()
                : throw new InvalidOperationException(Invariant(
                    $"{RoutingStats.AcceleratorVariable}={choice}, but this program cannot generate code (native AOT, or PublishAot set, as a file-based program sets it), which ILGPU's kernels need: use managed, or set PublishAot to false."));
        }

        var context = Context.Create(builder => builder.Default());
        try
        {
            foreach (var type in order)
            {
                var device = context.Devices.FirstOrDefault(d => d.AcceleratorType == type);
                if (device is null)
                {
                    continue;
                }

                var accelerator = device.CreateAccelerator(context);
                return onDevice(accelerator, new OwnedDevice(context, accelerator));
            }
        }
        catch
        {
            context.Dispose();
            throw;
        }

        context.Dispose();
        return string.IsNullOrEmpty(choice)
            ? managed()
            : throw new InvalidOperationException(Invariant($"{RoutingStats.AcceleratorVariable}={choice}, but ILGPU finds no such accelerator on this machine."));
    }

    /// <summary>The context and accelerator that <see cref="Choose{T}"/> made for the statistics it returns (a single layer's or a model's), freed with them.</summary>
    private sealed class OwnedDevice(Context context, Accelerator accelerator) : IDisposable
    {
        public void Dispose() => Disposal.All(accelerator, context);
    }
}
