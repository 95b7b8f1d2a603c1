using System.CommandLine;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Bench;

/// <summary>
/// <c>--model-steps [--model-shapes 58x256x8x256,..] [--steps N]</c>: for a profiler or a memory checker on the GPU
/// machine (Nsight Compute, compute-sanitizer), which name kernels only by their entry point, and ILGPU names every
/// kernel's entry <c>Kernel_Kernel</c>. Per shape, on the accelerator <c>MOEGS_ACCELERATOR</c> names (else the best), a
/// model of the shape records N steps of the model check's ids (default 3): N launches of the step kernel and no
/// other kernel, so a profiler's launch count picks them (<c>ncu --launch-skip 1 --launch-count 1</c> profiles the
/// first shape's second step). Then a managed model records the same steps, and the line says whether the two window
/// loads are equal (exit 1 where not): the reading launches its kernels after the steps.
/// </summary>
internal static class ModelStepsRun
{
    private static readonly Option<ModelShape[]> Shapes = QuickOptions.Shapes("58x256x8x256,58x256x8x16384");
    private static readonly Option<int> Steps = QuickOptions.WholeNumber("--steps", 3, 1, int.MaxValue, "the steps each shape records");

    public static QuickMode Mode { get; } = new(
        new Option<bool>("--model-steps"),
        "Records N steps of each shape on the device and then on the managed engine, for a profiler or a memory checker.",
        [Shapes, Steps],
        Run);

    private static int Run(ParseResult parsed)
    {
        var shapes = parsed.GetRequiredValue(Shapes);
        var steps = parsed.GetValue(Steps);

        using var context = Context.Create(builder => builder.Default());
        using var accelerator = DeviceCheck.ChooseDevice(context).CreateAccelerator(context);
        Console.WriteLine($"device: {accelerator.Name} ({accelerator.AcceleratorType}); {steps} steps a shape, in the order given");
        var allEqual = true;
        foreach (var shape in shapes)
        {
            var options = new ModelRoutingStatsOptions { Layers = shape.Layers, Experts = shape.Experts };
            var host = shape.Ids();
            using var ids = accelerator.Allocate1D(host);
            using var stream = accelerator.CreateStream();
            using var model = new ModelRoutingStats(new DeviceModelEngine(accelerator, options, stream));
            for (var i = 0; i < steps; i++)
            {
                model.RecordStep(ids.View, shape.Tokens, shape.TopK);
            }

            stream.Synchronize();
            using var managed = new ModelRoutingStats(options);
            for (var i = 0; i < steps; i++)
            {
                managed.RecordStep(host, shape.Tokens, shape.TopK);
            }

            var equal = model.WindowLoad().AsSpan().SequenceEqual(managed.WindowLoad());
            allEqual &= equal;
            Console.WriteLine($"{shape.Layers}x{shape.Experts}x{shape.TopK}x{shape.Tokens}: {steps} step launches; window load {(equal ? "equal to the managed engine's" : "DIFFERS from the managed engine's")}");
        }

        return allEqual ? 0 : 1;
    }
}
