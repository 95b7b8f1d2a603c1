using System.Text.Json;

namespace MoeGpuStats.Tests.Model;

/// <summary>A summary compares and prints by its figures, as the records that hold it.</summary>
public sealed class BalanceSummaryTests
{
    private static readonly ModelRoutingStatsOptions Options = new() { Layers = 3, Experts = 8, Window = 4 };

    [Fact]
    public void ASummaryReadBackFromJsonEqualsItsSource()
    {
        using var model = new ModelRoutingStats(Options);
        foreach (var step in ModelSteps.Random(Options.Layers, Options.Experts, 2, 6, seed: 41))
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
        }

        using var read = JsonSerializer.Deserialize<ModelRoutingStats>(JsonSerializer.Serialize(model))!;
        var (summary, again) = (model.Summary(), read.Summary());

        Assert.NotSame(summary.Window, again.Window);
        Assert.True(summary.Window == again.Window);
        Assert.Equal(summary, again);
        Assert.Equal(summary.GetHashCode(), again.GetHashCode());

        model.RecordStep(new int[Options.Layers * 2], 1, 2);
        Assert.NotEqual(again, model.Summary());
        Assert.True(again.Window != model.Summary().Window);
    }

    [Fact]
    public void ItPrintsTheModelsFigures()
    {
        using var model = new ModelRoutingStats(Options);
        model.RecordStep([0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1], 2, 2);

        var text = model.Summary().ToString();

        // Layer 0 routes 3 slots to expert 0 and 1 to expert 1, layers 1 and 2 one slot to each of four
        // experts: balancedness 0.5 / 3, 0.5 and 0.5 (mean load over 8 experts over the largest); the 10th
        // percentile lies a fifth of the way from the first to the second (numpy.percentile gives 0.23333333333333334).
        Assert.Equal(
            "ModelRoutingSummary { Steps = 1, WindowSteps = 1, "
            + "Window = BalanceSummary { Layers = 3, MinBalancedness = 0.16666666666666666, P10Balancedness = 0.23333333333333334, MedianBalancedness = 0.5, MeanBalancedness = 0.38888888888888884, MaxBalancedness = 0.5, WorstLayer = 0, BestLayer = 1, TokenWeightedBalancedness = 0.3 }, "
            + "SinceStart = BalanceSummary { Layers = 3, MinBalancedness = 0.16666666666666666, P10Balancedness = 0.23333333333333334, MedianBalancedness = 0.5, MeanBalancedness = 0.38888888888888884, MaxBalancedness = 0.5, WorstLayer = 0, BestLayer = 1, TokenWeightedBalancedness = 0.3 } }",
            text);
    }

    /// <summary>
    /// A layer whose step routed nothing (every slot padding) reads as balanced: balancedness and max/mean 1,
    /// CV 0, every expert dead, the last expert hottest and the first coldest (all tie at 0); it counts as 1
    /// in the figures across layers and adds nothing to the token-weighted figure.
    /// </summary>
    [Fact]
    public void ALayerWithoutLoadIsBalancedAndCountsAsOneAcrossLayers()
    {
        using var model = new ModelRoutingStats(Options);
        // Layer 0: three slots to expert 0, one to expert 1; layer 1: padding only; layer 2: one slot to each of experts 0-3.
        model.RecordStep([0, 0, 0, 1, -1, -1, -1, -1, 0, 1, 2, 3], 2, 2);

        foreach (var summary in new[] { model.Summary().Window, model.Summary().SinceStart })
        {
            // Without load: Gini 0 and the hottest tenth's share even, one expert of 8.
            Assert.Equal(new LayerBalance(0, 0, 0, 0, 1, 1, 0, HottestExpert: 7, ColdestExpert: 0, DeadExperts: 8, GiniCoefficient: 0, Top10PercentShare: 1 / 8.0), summary.Layers[1]);
            // Loads 3, 1 and six 0: Σ|x_i − x_j| over ordered pairs is 52, over 2 · 8² · 0.5 a Gini of 0.8125; the
            // hottest tenth (one expert) holds 3 of the 4 slots.
            Assert.Equal(new LayerBalance(4, 0.5, 3, 0, 0.5 / 3, 6, Math.Sqrt(((2.5 * 2.5) + (0.5 * 0.5) + (6 * 0.25)) / 8) / 0.5, 0, 2, 6, 0.8125, 0.75), summary.Layers[0]);
            Assert.Equal(0.5 / 3, summary.MinBalancedness);
            Assert.Equal(0.5, summary.MedianBalancedness);
            Assert.Equal(((0.5 / 3) + 1 + 0.5) / 3, summary.MeanBalancedness, 15);
            Assert.Equal(0, summary.WorstLayer);
            Assert.Equal((1.0, 1), (summary.MaxBalancedness, summary.BestLayer));
            Assert.Equal((0.5 + 0 + 0.5) / (3 + 0 + 1), summary.TokenWeightedBalancedness);
        }
    }

    /// <summary>Layers that tie for the smallest balancedness: the worst layer is the first of them.</summary>
    [Fact]
    public void TheWorstLayerIsTheFirstOfThoseThatTie()
    {
        using var model = new ModelRoutingStats(Options);
        // Layers 0 and 2: three slots to one expert and one to another (balancedness 1/6); layer 1: four experts one each (1/2).
        model.RecordStep([0, 0, 0, 1, 0, 1, 2, 3, 5, 5, 5, 6], 2, 2);

        var summary = model.Summary().Window;
        Assert.Equal(summary.Layers[0].Balancedness, summary.Layers[2].Balancedness);
        Assert.Equal(0, summary.WorstLayer);
        Assert.Equal((5, 0), (summary.Layers[2].HottestExpert, summary.Layers[2].ColdestExpert));
    }

    /// <summary>Layers that tie for the largest balancedness: the best layer is the first of them, and the largest is theirs.</summary>
    [Fact]
    public void TheBestLayerIsTheFirstOfThoseThatTie()
    {
        using var model = new ModelRoutingStats(Options);
        // Layer 0: three slots to one expert and one to another (balancedness 1/6); layers 1 and 2: four experts one each (1/2).
        model.RecordStep([0, 0, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7], 2, 2);

        var summary = model.Summary().Window;
        Assert.Equal(summary.Layers[1].Balancedness, summary.Layers[2].Balancedness);
        Assert.Equal((0.5, 1), (summary.MaxBalancedness, summary.BestLayer));
        Assert.Equal((0.5 / 3, 0), (summary.MinBalancedness, summary.WorstLayer));
    }

    /// <summary>
    /// The 10th percentile across layers, at rank <c>0.1 × (layers − 1)</c>, interpolated as NumPy's <c>_lerp</c> does:
    /// <c>a + (b − a)·t</c> below t = 0.5, <c>b − (b − a)·(1 − t)</c> from it. For 3 to 7 layers the two formulas
    /// differ in the last bit (the other's value in brackets), so the test tells them apart; one layer is its own
    /// percentile, and 12 layers put the rank past the first pair. Layers route <c>m</c> slots to expert 0 and one to
    /// each of experts 1 to 3: balancedness <c>(m + 3) / 4 / m</c>, 1 for m = 1, 1/3 for m = 9.
    /// </summary>
    [Theory]
    [InlineData(1, new[] { 9 }, 0.3333333333333333)]
    [InlineData(3, new[] { 9 }, 0.4666666666666667)] // t = 0.2 (0.46666666666666656)
    [InlineData(5, new[] { 9 }, 0.6000000000000001)] // t = 0.4 (0.6)
    [InlineData(6, new[] { 9 }, 0.6666666666666666)] // t = 0.5 (0.6666666666666667)
    [InlineData(7, new[] { 8, 2 }, 0.5125000000000001)] // 0.34375 and 0.625 at t = 0.6000000000000001 (0.5125)
    [InlineData(12, new[] { 9, 8, 7 }, 0.3450892857142857)] // rank 1.1: 0.34375 and 5/14 at t = 0.10000000000000009
    public void TheTenthPercentileAcrossLayersInterpolatesAsNumPy(int layers, int[] hotSlots, double expected)
    {
        var options = new ModelRoutingStatsOptions { Layers = layers, Experts = 4 };
        using var model = new ModelRoutingStats(options);
        var tokens = hotSlots.Max() + 3;
        var ids = Enumerable.Range(0, layers).SelectMany(l =>
        {
            var m = l < hotSlots.Length ? hotSlots[l] : 1;
            return Enumerable.Repeat(0, m).Concat([1, 2, 3]).Concat(Enumerable.Repeat(-1, tokens - m - 3));
        }).ToArray();
        model.RecordStep(ids, tokens, topK: 1);

        var summary = model.Summary().Window;

        Assert.Equal(((hotSlots[0] + 3) / 4.0) / hotSlots[0], summary.Layers[0].Balancedness);
        Assert.Equal(expected, summary.P10Balancedness);
    }

    /// <summary>
    /// An even layer count's median is the mean of the middle two. Layers route m = 9, 5, 3 and 1 slots to expert 0 and
    /// one to each of experts 1 to 3: balancedness 1/3, 0.4, 0.5 and 1, median (0.4 + 0.5) / 2; token-weighted
    /// (3 + 2 + 1.5 + 1) / (9 + 5 + 3 + 1).
    /// </summary>
    [Fact]
    public void TheMedianOfAnEvenLayerCountIsTheMeanOfTheMiddleTwo()
    {
        int[] hot = [9, 5, 3, 1];
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = hot.Length, Experts = 4 });
        var ids = hot.SelectMany(m => Enumerable.Repeat(0, m).Concat([1, 2, 3]).Concat(Enumerable.Repeat(-1, 9 - m))).ToArray();
        model.RecordStep(ids, 12, topK: 1);

        foreach (var summary in new[] { model.Summary().Window, model.Summary().SinceStart })
        {
            Assert.Equal(0.45, summary.MedianBalancedness, 15);
            Assert.Equal(((1 / 3.0) + 0.4 + 0.5 + 1) / 4, summary.MeanBalancedness, 15);
            Assert.Equal((1 / 3.0, 0), (summary.MinBalancedness, summary.WorstLayer));
            Assert.Equal((1.0, 3), (summary.MaxBalancedness, summary.BestLayer));
            Assert.Equal(7.5 / 18, summary.TokenWeightedBalancedness, 15);
        }
    }

    /// <summary>A model whose every layer is without load is balanced across layers: every figure 1, token-weighted included.</summary>
    [Fact]
    public void AModelWithoutLoadIsBalancedAcrossLayers()
    {
        using var model = new ModelRoutingStats(Options);
        model.RecordStep(Enumerable.Repeat(-1, Options.Layers * 4).ToArray(), 2, 2);

        foreach (var summary in new[] { model.Summary().Window, model.Summary().SinceStart })
        {
            Assert.Equal(
                (1.0, 1.0, 1.0, 1.0, 1.0, 0, 0, 1.0),
                (summary.MinBalancedness, summary.P10Balancedness, summary.MedianBalancedness, summary.MeanBalancedness, summary.MaxBalancedness, summary.WorstLayer, summary.BestLayer, summary.TokenWeightedBalancedness));
        }
    }

    /// <summary>The operators take null on either side; summaries of different layers hash apart.</summary>
    [Fact]
    public void NullComparesEqualOnlyToNullAndDifferentSummariesHashApart()
    {
        using var model = new ModelRoutingStats(Options);
        model.RecordStep([0, 0, 0, 1, 0, 1, 2, 3, 5, 5, 5, 6], 2, 2);
        var summary = model.Summary().Window;
        BalanceSummary? none = null;

        Assert.True(none == null);
        Assert.False(none == summary);
        Assert.False(summary == none);
        Assert.True(none != summary);
        Assert.False(summary.Equals(none));

        model.RecordStep([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2, 2);
        var other = model.Summary().Window;
        Assert.NotEqual(summary, other);
        Assert.NotEqual(summary.GetHashCode(), other.GetHashCode());
    }
}
