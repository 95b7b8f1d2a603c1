using ILGPU.Runtime;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// Models and routers that share one accelerator and record from their own threads keep their own steps, on every
/// kind. On OpenCL they launch the same kernel objects, whose arguments each launch sets (<c>LaunchGate</c>): without
/// the gate, PoCL 5.0 put steps into another object's state or corrupted its heap.
/// </summary>
public sealed class SharedAcceleratorTests
{
    private const int Threads = 4;
    private const int Steps = 60;
    private const int Tokens = 5;
    private const int TopK = 2;

    public static TheoryData<string> Kinds => TestAccelerators.Kinds;

    [Theory]
    [MemberData(nameof(Kinds))]
    public void ModelsAndRoutersRecordingFromTheirOwnThreadsKeepTheirOwnSteps(string kind)
    {
        var accelerator = TestAccelerators.Require(kind);
        var failures = new Exception?[Threads];
        using var start = new Barrier(Threads);
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            try
            {
                RecordAgainstTheManagedEngine(accelerator, t);
            }
            catch (Exception exception)
            {
                failures[t] = exception;
            }
        })).ToList();
        threads.ForEach(thread => thread.Start());
        threads.ForEach(thread => thread.Join());
        Assert.All(failures, Assert.Null);
    }

    private static void RecordAgainstTheManagedEngine(Accelerator accelerator, int thread)
    {
        // Each thread's shape differs, so that a step launched with another object's arguments shows.
        var options = new ModelRoutingStatsOptions { Layers = 2 + thread, Experts = 8 + (4 * thread), Window = 3 + thread };
        var routerOptions = new RoutingStatsOptions { Experts = options.Experts };
        using var model = ModelRoutingStats.OnDevice(accelerator, options);
        using var managed = new ModelRoutingStats(options);
        using var router = RoutingStats.OnDevice(accelerator, routerOptions);
        using var managedRouter = new RoutingStats(routerOptions);
        var random = new Random(thread);
        for (var step = 0; step < Steps; step++)
        {
            var ids = new int[options.Layers * Tokens * TopK];
            for (var i = 0; i < ids.Length; i++)
            {
                ids[i] = random.Next(options.Experts);
            }

            model.RecordStep(ids, Tokens, TopK);
            managed.RecordStep(ids, Tokens, TopK);
            router.RecordRouting(ids.AsSpan(0, Tokens * TopK), Tokens, TopK);
            managedRouter.RecordRouting(ids.AsSpan(0, Tokens * TopK), Tokens, TopK);
            if (step % 7 == 6)
            {
                Assert.Equal((ulong)(step + 1), model.Summary().Steps);
            }
        }

        Assert.Equal(ModelSteps.Fingerprint(managed), ModelSteps.Fingerprint(model));
        Assert.Equal(ModelSteps.Fingerprint(managedRouter), ModelSteps.Fingerprint(router));
    }
}
