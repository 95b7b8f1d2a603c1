using MoeGpuStats.Engines;

namespace MoeGpuStats.Tests.Model;

// What a read allocates: its figures and the arrays it returns, not copies of the model's [layers, experts] loads
// made to measure them (a summary read every step, as vLLM logs balancedness, would allocate them every step).
public sealed partial class ModelRoutingStatsTests
{
    /// <summary>4 layers of 4,096 experts: a load is 128 KiB, many times a summary's figures (two balances per layer).</summary>
    private static readonly ModelRoutingStatsOptions WideOptions = new() { Layers = 4, Experts = 4096, Window = 6 };

    private static int WideLoadBytes => WideOptions.Layers * WideOptions.Experts * sizeof(ulong);

    [Theory]
    [MemberData(nameof(Engines))]
    public void ASummaryAllocatesItsFiguresNotCopiesOfTheLoads(string engine)
    {
        using var model = WideModelAfterSteps(engine, seed: 71);
        var ranks = Enumerable.Range(0, WideOptions.Experts).Select(e => e % 8).ToArray();
        foreach (var (name, read) in new (string, Action)[]
        {
            ("Summary()", () => model.Summary()),
            ("Summary(3)", () => model.Summary(3)),
            ("Summary(ranks)", () => model.Summary(ranks)),
        })
        {
            var allocated = AllocatedOnSecondCall(read);
            Assert.True(allocated < WideLoadBytes / 2, $"{name} on {engine}: {allocated:N0} bytes allocated where a load is {WideLoadBytes:N0}");
        }
    }

    /// <summary>A reading that returns the window load and the counts since the start allocates those two arrays, not a staging of them as well.</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void AReadingThatReturnsTheLoadsAllocatesThemOnce(string engine)
    {
        using var model = WideModelAfterSteps(engine, seed: 73);
        var request = new ModelReadRequest { RecentSteps = WideOptions.Window, AlsoRecentSteps = 2, Totals = true, WindowLoad = true, TokenCounts = true };
        var allocated = AllocatedOnSecondCall(() => model.Read(request));

        Assert.True(allocated < (2 * WideLoadBytes) + (WideLoadBytes / 2), $"{allocated:N0} bytes allocated by a reading that returns two loads of {WideLoadBytes:N0}");
        var reading = model.Read(request);
        Assert.Equal(model.WindowLoad(), reading.WindowLoad);
        Assert.Equal(
            Enumerable.Range(0, WideOptions.Layers).SelectMany(l => model.Layer(l).ExpertTokenCounts),
            reading.TokenCounts!);
    }

    /// <summary>
    /// The engines measure loads in arrays rented from the shared pool, which hold what their last renter left: a model
    /// before its first step, read after a busy model of its size on the same thread, still reads no load.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void AFreshModelReadAfterABusyOneReadsNoLoad(string engine)
    {
        using (var busy = WideModelAfterSteps(engine, seed: 79))
        {
            Assert.NotEqual(0UL, busy.Summary().SinceStart.Layers[0].Load);
            Assert.NotEqual(0UL, busy.Summary(1).Window.Layers[0].Load);
        }

        using var fresh = Create(engine, WideOptions);
        var summary = fresh.Summary();
        foreach (var balance in new[] { summary.Window, summary.SinceStart })
        {
            Assert.All(balance.Layers, layer => Assert.Equal((0UL, WideOptions.Experts), (layer.Load, layer.DeadExperts)));
        }
    }

    /// <summary>A model of <see cref="WideOptions"/> on <paramref name="engine"/> after nine random steps of top-8 ids.</summary>
    private static ModelRoutingStats WideModelAfterSteps(string engine, int seed)
    {
        var model = Create(engine, WideOptions);
        foreach (var step in ModelSteps.Random(WideOptions.Layers, WideOptions.Experts, topK: 8, count: 9, seed: seed))
        {
            Record(model, step);
        }

        return model;
    }

    /// <summary>The bytes <paramref name="read"/> allocates on this thread the second time it runs (the first may compile and fill pools).</summary>
    private static long AllocatedOnSecondCall(Action read)
    {
        read();
        var before = GC.GetAllocatedBytesForCurrentThread();
        read();
        return GC.GetAllocatedBytesForCurrentThread() - before;
    }
}
