namespace MoeGpuStats.Tests.Model;

/// <summary>
/// A managed model whose window is at least the variance history's 1,000 batches computes each layer's load
/// variances from the window's rows (whole rows and decode steps' lists) instead of keeping copies of the
/// histograms: over runs longer than both, read late or often, snapshotted and reset, every layer's history
/// equals a single layer's fed its ids.
/// </summary>
public sealed partial class ModelRoutingStatsTests
{
    private static readonly ModelRoutingStatsOptions LongRun = new() { Layers = 3, Experts = 40, ExpertCapacity = 9 };

    /// <summary>
    /// 2,300 steps, some of 32 ids or fewer a layer (kept as lists), some more (whole rows), padding and invalid
    /// ids among them. Read only at the end, the oldest variance pending is that of the row the window evicts
    /// next; a window one step shorter than the history cannot hold it, and the layers keep copies there.
    /// </summary>
    [Theory]
    [InlineData(1_000, 0, false)]
    [InlineData(1_000, 997, false)]
    [InlineData(1_001, 0, false)]
    [InlineData(999, 0, false)]
    [InlineData(1_000, 0, true)]
    public void ALongRunsVarianceHistoryEqualsTheSingleLayers(int window, int readEvery, bool skipEmptySteps)
    {
        var options = LongRun with { Window = window, SkipEmptySteps = skipEmptySteps };
        var steps = ModelSteps.Random(options.Layers, options.Experts, topK: 2, count: 2_300, seed: 83);
        if (skipEmptySteps)
        {
            steps = WithEmptySteps(steps, options.Layers);
        }

        using var model = new ModelRoutingStats(options);
        for (var s = 0; s < steps.Count; s++)
        {
            Record(model, steps[s]);
            if (readEvery > 0 && s % readEvery == readEvery - 1)
            {
                AssertLayersEqual(model, ModelSteps.SingleLayers(options, Kept(steps.Take(s + 1), options)), $"after {s + 1} steps");
            }
        }

        var kept = Kept(steps, options);
        Assert.True(kept.Count > 2_000, $"{kept.Count} steps kept");
        AssertLayersEqual(model, ModelSteps.SingleLayers(options, kept), "at the end");
        Assert.Equal(1_000, model.Layer(0).LoadVarianceHistory.Count);
    }

    /// <summary>
    /// A snapshot computes the variances pending from the window's rows into its copy; the model goes on from
    /// the same rows, and after a reset from rows written since.
    /// </summary>
    [Fact]
    public void SnapshotsAndResetsOfALongRunKeepTheVarianceHistory()
    {
        var steps = ModelSteps.Random(LongRun.Layers, LongRun.Experts, topK: 2, count: 3_600, seed: 89);
        using var model = new ModelRoutingStats(LongRun);
        foreach (var step in steps.Take(1_500))
        {
            Record(model, step);
        }

        using var snapshot = model.Snapshot();
        foreach (var step in steps.Skip(1_500).Take(900))
        {
            Record(model, step);
        }

        AssertLayersEqual(snapshot, ModelSteps.SingleLayers(LongRun, steps.Take(1_500)), "snapshot after 1,500 steps");
        AssertLayersEqual(model, ModelSteps.SingleLayers(LongRun, steps.Take(2_400)), "after 2,400 steps");

        model.Reset();
        foreach (var step in steps.Skip(2_400))
        {
            Record(model, step);
        }

        AssertLayersEqual(model, ModelSteps.SingleLayers(LongRun, steps.Skip(2_400)), "1,200 steps after a reset");
    }

    /// <summary>
    /// The memory that buys: a layer's first step allocates a row to compute variances in, not a copy of 1,000
    /// histograms (4 × 1,000 × 1,024 ints, 16 MB, in a model of 4 layers of 1,024 experts).
    /// </summary>
    [Fact]
    public void ALayersVarianceHistoryKeepsNoCopiesOfTheHistograms()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 4, Experts = 1_024 });
        int[] ids = [.. Enumerable.Range(0, 4 * 64)];

        var before = GC.GetAllocatedBytesForCurrentThread();
        model.RecordStep(ids, tokens: 64, topK: 1);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated < 1_000_000, $"{allocated:N0} bytes allocated by the first step");
        using var alone = new RoutingStats(new RoutingStatsOptions { Experts = 1_024 });
        alone.RecordRouting(ids.AsSpan(3 * 64, 64), tokens: 64, topK: 1);
        Assert.Equal(alone.LoadVarianceHistory, model.Layer(3).LoadVarianceHistory);
    }

    /// <summary>
    /// A window shorter than the history keeps copies, within one budget for all layers: 128 layers of 4,096
    /// experts would otherwise take 128 × 1,000 × 4,096 ints (2.1 GB) at their first step. Past the budget a
    /// layer computes each variance as it records, to the same value.
    /// </summary>
    [Fact]
    public void AShortWindowsLayersShareOneBudgetForCopies()
    {
        var options = new ModelRoutingStatsOptions { Layers = 128, Experts = 4_096, Window = 2 };
        using var model = new ModelRoutingStats(options);
        var steps = ModelSteps.Random(options.Layers, options.Experts, topK: 2, count: 3, seed: 97);

        var before = GC.GetAllocatedBytesForCurrentThread();
        Record(model, steps[0]);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated < 64_000_000, $"{allocated:N0} bytes allocated by the first step");
        Record(model, steps[1]);
        Record(model, steps[2]);
        foreach (var layer in new[] { 0, 127 })
        {
            using var alone = new RoutingStats(options.LayerOptions);
            foreach (var step in steps)
            {
                alone.RecordRouting(step.LayerIds(layer), step.Valid, step.TopK, step.LoadBalanceLosses[layer], step.RouterZLosses.Length == 0 ? 0f : step.RouterZLosses[layer]);
            }

            Assert.Equal(alone.LoadVarianceHistory, model.Layer(layer).LoadVarianceHistory);
        }
    }

    /// <summary>
    /// Within the budget a short window's layers still defer: 4 layers of 1,024 experts take 1,000 steps' copies and
    /// ids each (4 × 1,000 × 1,057 ints, 16.9 MB) at their first step, as the single layer does.
    /// </summary>
    [Fact]
    public void AShortWindowsLayersWithinTheBudgetKeepCopies()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 4, Experts = 1_024, Window = 2 });
        int[] ids = [.. Enumerable.Range(0, 4 * 64)];

        var before = GC.GetAllocatedBytesForCurrentThread();
        model.RecordStep(ids, tokens: 64, topK: 1);
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.True(allocated > 4L * 1_000 * 1_057 * sizeof(int), $"{allocated:N0} bytes allocated by the first step");
    }

    private static List<ModelSteps.Step> Kept(IEnumerable<ModelSteps.Step> steps, ModelRoutingStatsOptions options) =>
        [.. steps.Where(step => !options.SkipEmptySteps || step.HoldsToken(options.Layers))];
}
