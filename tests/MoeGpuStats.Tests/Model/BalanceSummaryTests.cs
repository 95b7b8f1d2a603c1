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
        // experts: balancedness 0.5 / 3, 0.5 and 0.5 (mean load over 8 experts over the largest).
        Assert.Equal(
            "ModelRoutingSummary { Steps = 1, WindowSteps = 1, "
            + "Window = BalanceSummary { Layers = 3, MinBalancedness = 0.16666666666666666, MedianBalancedness = 0.5, MeanBalancedness = 0.38888888888888884, WorstLayer = 0, TokenWeightedBalancedness = 0.3 }, "
            + "SinceStart = BalanceSummary { Layers = 3, MinBalancedness = 0.16666666666666666, MedianBalancedness = 0.5, MeanBalancedness = 0.38888888888888884, WorstLayer = 0, TokenWeightedBalancedness = 0.3 } }",
            text);
    }
}
