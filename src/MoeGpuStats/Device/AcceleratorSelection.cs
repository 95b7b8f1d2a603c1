using ILGPU;
using ILGPU.Runtime;
using Microsoft.Extensions.Logging;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Device;

/// <summary>
/// The one rule for the best engine present: CUDA, then OpenCL, then the managed engine.
/// <see cref="RoutingStats.Create"/>, the CLI and the C API's <c>"auto"</c> all follow it; ILGPU's CPU
/// accelerator runs only when asked for (<c>cpu</c>), as it is slower than the managed engine.
/// </summary>
internal static class AcceleratorSelection
{
    /// <summary>The accelerators tried, in order, before the managed engine.</summary>
    public static readonly AcceleratorType[] BestFirst = [AcceleratorType.Cuda, AcceleratorType.OpenCL];

    public static RoutingStats Create(string? requested, RoutingStatsOptions options, ILogger? logger)
    {
        var choice = requested?.Trim().ToLowerInvariant();
        if (choice is "managed")
        {
            return new RoutingStats(options);
        }

        AcceleratorType[] order = choice switch
        {
            null or "" => BestFirst,
            "cuda" => [AcceleratorType.Cuda],
            "opencl" => [AcceleratorType.OpenCL],
            "cpu" => [AcceleratorType.CPU],
            _ => throw new InvalidOperationException(
                $"{RoutingStats.AcceleratorVariable}='{requested}' is not one of cuda, opencl, cpu, managed."),
        };

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
                var owned = new OwnedDevice(context, accelerator);
                return new RoutingStats(new DeviceRoutingEngine(new DeviceRoutingStats(accelerator, options, stream: null, logger), owned));
            }
        }
        catch
        {
            context.Dispose();
            throw;
        }

        context.Dispose();
        return string.IsNullOrEmpty(choice)
            ? new RoutingStats(options)
            : throw new InvalidOperationException($"{RoutingStats.AcceleratorVariable}={choice}, but ILGPU finds no such accelerator on this machine.");
    }

    /// <summary>The context and accelerator that <see cref="RoutingStats.Create"/> made, freed with the statistics.</summary>
    private sealed class OwnedDevice(Context context, Accelerator accelerator) : IDisposable
    {
        public void Dispose()
        {
            accelerator.Dispose();
            context.Dispose();
        }
    }
}
