using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Tests;

/// <summary>
/// One ILGPU context for the whole run (kernel compilation is cached per accelerator), with the
/// accelerators this machine has. CUDA and OpenCL tests skip with a reason where they are absent.
/// </summary>
public static class TestAccelerators
{
    private static readonly Lazy<Context> SharedContext = new(() => Context.Create(builder => builder.Default()));
    private static readonly Dictionary<string, Accelerator?> Created = [];
    private static readonly Lock Gate = new();

    public static TheoryData<string> Kinds => ["cpu", "cuda", "opencl"];

    /// <summary>The accelerator of that kind, or a skip (never a silent pass) where there is none.</summary>
    public static Accelerator Require(string kind)
    {
        lock (Gate)
        {
            if (!Created.TryGetValue(kind, out var accelerator))
            {
                var type = kind switch
                {
                    "cpu" => AcceleratorType.CPU,
                    "cuda" => AcceleratorType.Cuda,
                    "opencl" => AcceleratorType.OpenCL,
                    _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown accelerator kind."),
                };
                var device = SharedContext.Value.Devices.FirstOrDefault(d => d.AcceleratorType == type);
                accelerator = device?.CreateAccelerator(SharedContext.Value);
                Created[kind] = accelerator;
            }

            if (accelerator is null)
            {
                Assert.Skip($"No {kind} accelerator on this machine (ILGPU lists none).");
            }

            return accelerator;
        }
    }
}
