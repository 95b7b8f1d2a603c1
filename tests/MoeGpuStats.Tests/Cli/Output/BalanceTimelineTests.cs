using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>BalanceTimeline: the per-column balancedness that a replay's picture draws over time.</summary>
public sealed class BalanceTimelineTests
{
    private const int Layers = 3;
    private const int Tokens = 6;
    private const int TopK = 2;
    private const int Experts = 8;

    /// <summary>The timeline's columns are the balancedness of the load their steps routed, counted directly.</summary>
    [Fact]
    public void TheTimelineIsEachColumnsBalancednessOfItsSteps()
    {
        const int steps = 1_250;
        var timeline = new BalanceTimeline(Layers, Experts, steps);
        var random = new Random(9);
        var load = new long[Layers, Experts];
        var expected = new List<double[]>();
        for (var step = 0; step < steps; step++)
        {
            var ids = new int[Layers * Tokens * TopK];
            for (var i = 0; i < ids.Length; i++)
            {
                ids[i] = random.Next(10) == 0 ? -1 : random.Next(10) == 0 ? Experts + 2 : (int)(random.NextDouble() * random.NextDouble() * Experts);
                if (ids[i] is >= 0 and < Experts)
                {
                    load[i / (Tokens * TopK), ids[i]]++;
                }
            }

            timeline.Add(ids, Tokens, TopK);
            if ((step + 1) % timeline.StepsPerColumn == 0 || step == steps - 1)
            {
                expected.Add([.. Enumerable.Range(0, Layers).Select(l => Balancedness(load, l))]);
                Array.Clear(load);
            }
        }

        timeline.Complete();

        Assert.Equal(3, timeline.StepsPerColumn);
        Assert.Equal(417, timeline.Columns);
        Assert.Equal(timeline.Columns, timeline.Filled);
        for (var c = 0; c < timeline.Filled; c++)
        {
            for (var l = 0; l < Layers; l++)
            {
                Assert.Equal(expected[c][l], timeline.Balancedness[l, c]);
            }
        }
    }

    /// <summary>A column whose steps routed nothing in a layer (padding, invalid ids) has no balancedness: NaN, drawn apart, not 1 (even).</summary>
    [Fact]
    public void AColumnWithoutLoadIsNaN()
    {
        var timeline = new BalanceTimeline(Layers, Experts, steps: 2);
        var loaded = Enumerable.Range(0, Layers * Tokens * TopK).Select(i => i % Experts).ToArray();
        int[] padding = [.. Enumerable.Repeat(-1, Tokens * TopK), .. Enumerable.Repeat(Experts, Tokens * TopK), .. loaded.AsSpan(0, Tokens * TopK)];

        timeline.Add(loaded, Tokens, TopK);
        timeline.Add(padding, Tokens, TopK);

        // 12 ids over 8 experts: 2 slots for experts 0 to 3, 1 for the rest, so a mean of 1.5 over a max of 2.
        Assert.Equal([0.75, 0.75, 0.75], Enumerable.Range(0, Layers).Select(l => timeline.Balancedness[l, 0]));
        Assert.Equal([double.NaN, double.NaN, 0.75], Enumerable.Range(0, Layers).Select(l => timeline.Balancedness[l, 1]));
    }

    /// <summary>
    /// With the model's <c>SkipEmptySteps</c>, a step of padding alone takes no column, as it takes no step of the
    /// model's (the heat map above counts those); a step with one token left keeps its column, and without the
    /// option the padding step is a column of no load.
    /// </summary>
    [Theory]
    [InlineData(true, 2)]
    [InlineData(false, 3)]
    public void AStepOfPaddingAloneTakesNoColumnWhereTheModelLeavesItOut(bool skipEmptySteps, int columns)
    {
        var timeline = new BalanceTimeline(Layers, Experts, steps: 3, skipEmptySteps);
        var loaded = Enumerable.Range(0, Layers * Tokens * TopK).Select(i => i % Experts).ToArray();
        var padding = Enumerable.Repeat(-1, Layers * Tokens * TopK).ToArray();
        var oneToken = (int[])padding.Clone();
        oneToken[^1] = 3;

        timeline.Add(loaded, Tokens, TopK);
        timeline.Add([.. padding, .. loaded], Tokens, TopK);   // the buffer past the step is not the step's
        timeline.Add(oneToken, Tokens, TopK);
        timeline.Complete();

        Assert.Equal(columns, timeline.Filled);
        Assert.Equal(skipEmptySteps, timeline.SkipsEmptySteps);
        Assert.Equal(0.75, timeline.Balancedness[0, 0]);
        Assert.Equal(1.0 / Experts, timeline.Balancedness[Layers - 1, columns - 1]);
        Assert.Equal(skipEmptySteps ? 1.0 / Experts : double.NaN, timeline.Balancedness[Layers - 1, 1]);
    }

    /// <summary>A last column of a single step is closed by <see cref="BalanceTimeline.Complete"/> as any part-filled one: 601 steps, 2 a column, the last alone.</summary>
    [Fact]
    public void ALastColumnOfOneStepIsClosed()
    {
        var timeline = new BalanceTimeline(Layers, Experts, steps: BalanceTimeline.MaxColumns + 1);
        var even = Enumerable.Range(0, Layers * Tokens * TopK).Select(i => i % Experts).ToArray();
        var skewed = Enumerable.Range(0, Layers * Tokens * TopK).Select(i => i % 3).ToArray();
        for (var step = 0; step < BalanceTimeline.MaxColumns; step++)
        {
            timeline.Add(even, Tokens, TopK);
        }

        timeline.Add(skewed, Tokens, TopK);
        Assert.Equal((2, 301, 300), (timeline.StepsPerColumn, timeline.Columns, timeline.Filled));

        timeline.Complete();

        // 12 ids over experts 0 to 2: 4 each, a mean of 12 / 8 over a max of 4.
        Assert.Equal(timeline.Columns, timeline.Filled);
        Assert.Equal(12.0 / Experts / 4, timeline.Balancedness[0, timeline.Columns - 1]);
    }

    private static double Balancedness(long[,] load, int layer)
    {
        var row = Enumerable.Range(0, Experts).Select(e => load[layer, e]).ToArray();
        return row.Max() == 0 ? double.NaN : row.Sum() / (double)Experts / row.Max();
    }
}
