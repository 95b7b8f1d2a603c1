using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace MoeGpuStats.Tests.Support;

/// <summary>
/// One ILGPU context for the whole run (kernel compilation is cached per accelerator), with the
/// accelerators this machine has. CUDA and OpenCL tests skip with a reason where they are absent,
/// or where <c>MOEGS_TEST_SKIP</c> names their kind (a comma-separated list, e.g. <c>opencl</c>): a
/// driver that crashes the process would otherwise take every later test's result with it.
/// </summary>
public static class TestAccelerators
{
    private static readonly Lazy<Context> SharedContext = new(() => Context.Create(builder => builder.Default()));

    // ILGPU's default CPU device has warps of 4 lanes; this one simulates a GPU's 32.
    private static readonly Lazy<Context> Warp32Context = new(() => Context.Create(builder => builder.CPU(CPUDevice.Nvidia)));

    // The default CPU device runs a record on one group; four multiprocessors of 16 threads run 16.
    private static readonly Lazy<Context> MultiprocessorContext = new(() => Context.Create(builder => builder.CPU(new CPUDevice(4, 4, 4))));
    // Host memory locked page by page for every copy: ILGPU 1.5.3 then copies to the device on the default stream.
    private static readonly Lazy<Context> AggressiveContext = new(() => Context.Create(builder => builder.Default().PageLocking(PageLockingMode.Aggressive)));
    private static readonly Dictionary<string, Accelerator?> Created = [];
    private static readonly Lock Gate = new();

    public static TheoryData<string> Kinds => ["cpu", "cuda", "opencl"];

    /// <summary>Each of <paramref name="cases"/> on each of <see cref="Kinds"/>: (kind, case).</summary>
    public static TheoryData<string, string> KindsBy(IEnumerable<string> cases)
    {
        var data = new TheoryData<string, string>();
        foreach (var kind in new[] { "cpu", "cuda", "opencl" })
        {
            foreach (var name in cases)
            {
                data.Add(kind, name);
            }
        }

        return data;
    }

    /// <summary>The variable that lists accelerator kinds whose tests skip.</summary>
    public const string SkipVariable = "MOEGS_TEST_SKIP";

    /// <summary>The CPU accelerator with 32-lane warps, for code that works on whole warps (not in <see cref="Kinds"/>: slower).</summary>
    public const string CpuWithWarpsOf32 = "cpu-warp32";

    /// <summary>The CPU accelerator with four multiprocessors, where a record has up to 16 groups (not in <see cref="Kinds"/>: slower).</summary>
    public const string CpuWithFourMultiprocessors = "cpu-4mp";

    /// <summary>A kind's accelerator in a context that locks host pages aggressively (<c>PageLockingMode.Aggressive</c>): "cpu", "cuda" or "opencl" then this suffix.</summary>
    public const string AggressivePageLocking = "-aggressive";

    /// <summary>The accelerator of that kind, or a skip (never a silent pass) where there is none.</summary>
    public static Accelerator Require(string kind)
    {
        var skipped = (Environment.GetEnvironmentVariable(SkipVariable) ?? "").Split(',', StringSplitOptions.TrimEntries);
        var baseKind = kind.EndsWith(AggressivePageLocking, StringComparison.Ordinal) ? kind[..^AggressivePageLocking.Length] : kind;
        if (skipped.Contains(kind, StringComparer.OrdinalIgnoreCase) || skipped.Contains(baseKind, StringComparer.OrdinalIgnoreCase))
        {
            Assert.Skip($"{SkipVariable} names {baseKind}.");
        }

        lock (Gate)
        {
            if (!Created.TryGetValue(kind, out var accelerator))
            {
                accelerator = Create(kind);
                Created[kind] = accelerator;
            }

            if (accelerator is null)
            {
                Assert.Skip($"No {kind} accelerator on this machine (ILGPU lists none).");
            }

            return accelerator;
        }
    }

    private static Accelerator? Create(string kind)
    {
        if (kind == CpuWithWarpsOf32)
        {
            return Warp32Context.Value.GetCPUDevice(0).CreateAccelerator(Warp32Context.Value);
        }

        if (kind == CpuWithFourMultiprocessors)
        {
            return MultiprocessorContext.Value.GetCPUDevice(0).CreateAccelerator(MultiprocessorContext.Value);
        }

        var context = SharedContext.Value;
        if (kind.EndsWith(AggressivePageLocking, StringComparison.Ordinal))
        {
            (context, kind) = (AggressiveContext.Value, kind[..^AggressivePageLocking.Length]);
        }

        var type = kind switch
        {
            "cpu" => AcceleratorType.CPU,
            "cuda" => AcceleratorType.Cuda,
            "opencl" => AcceleratorType.OpenCL,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown accelerator kind."),
        };
        var device = context.Devices.FirstOrDefault(d => d.AcceleratorType == type);
        return device?.CreateAccelerator(context);
    }
}
