using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>
/// The model report's figures, text and JSON, read against the model's own summary: each span's figures from that span
/// (the window's from the window, not since the start), each column of the layers' table from its layer, the checks over
/// the window, the ranks' section from the ranks' summary.
/// </summary>
public sealed class ModelReportTests
{
    private const int Layers = 4;
    private const int Experts = 8;
    private const int Tokens = 64;
    private const int TopK = 2;
    private const int Window = 4;
    private const int Steps = 10;
    private const int Capacity = 20;
    private const int Invalid = 32;

    /// <summary>
    /// Layer 0 routes nothing (padding alone); layer 1 routes to every expert until the window, then never to expert 7
    /// (dead in the window, not since the start); layer 2 is skewed to the low experts, a quarter of its ids invalid;
    /// layer 3 is even (balancedness 1, as layer 0's by convention).
    /// </summary>
    private static ModelRoutingStats Model()
    {
        var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = Window, ExpertCapacity = Capacity });
        var random = new Random(12);
        var ids = new int[Layers * Tokens * TopK];
        for (var step = 0; step < Steps; step++)
        {
            var inWindow = step >= Steps - Window;
            for (var slot = 0; slot < Tokens * TopK; slot++)
            {
                ids[slot] = -1;
                ids[(Tokens * TopK) + slot] = random.Next(inWindow ? Experts - 1 : Experts);
                ids[(2 * Tokens * TopK) + slot] = slot < Invalid ? Experts : (int)(random.NextDouble() * random.NextDouble() * Experts);
                ids[(3 * Tokens * TopK) + slot] = slot % Experts;
            }

            model.RecordStep(ids, Tokens, TopK);
        }

        return model;
    }

    [Fact]
    public void EachSpansFiguresAreThatSpans()
    {
        using var model = Model();
        var summary = model.Summary();
        var counts = ModelCounts.Of(model);
        Assert.False(counts.WindowHoldsAll);
        Assert.NotEqual(Figure(summary.Window.MinBalancedness), Figure(summary.SinceStart.MinBalancedness));

        var lines = Text(summary, counts);

        foreach (var (span, balance) in new[] { ($"over the window, the newest {Window} steps", summary.Window), ($"since the start, {Steps} steps", summary.SinceStart) })
        {
            var section = Section(lines, $"Model, {span}");
            Assert.Equal((Figure(balance.MinBalancedness), $"layer {balance.WorstLayer}, the worst"), Cell(section, "min balancedness"));
            Assert.Equal((Figure(balance.P10Balancedness), "the 10th percentile across layers"), Cell(section, "p10 balancedness"));
            Assert.Equal((Figure(balance.MedianBalancedness), ""), Cell(section, "median balancedness"));
            Assert.Equal((Figure(balance.MeanBalancedness), ""), Cell(section, "mean balancedness"));
            Assert.Equal(Figure(balance.MaxBalancedness), Cell(section, "max balancedness").Value);
            Assert.Equal($"layer {balance.BestLayer}, the best", Cell(section, "max balancedness").Note);
            Assert.Equal(Figure(balance.TokenWeightedBalancedness), Cell(section, "token-weighted balancedness").Value);
        }
    }

    /// <summary>Each row of the layers' table is its layer's figures, worst first and ties in layer order; a layer without load names no expert.</summary>
    [Fact]
    public void EachRowOfTheLayersTableIsItsLayer()
    {
        using var model = Model();
        var summary = model.Summary();

        var lines = Text(summary, ModelCounts.Of(model));

        foreach (var (span, balance) in new[] { ($"Layers, worst first, over the window", summary.Window), ($"Layers, worst first, since the start", summary.SinceStart) })
        {
            var rows = Section(lines, span).Skip(2).TakeWhile(line => line.Length > 0 && char.IsDigit(line.TrimStart()[0]))
                .Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)).ToArray();
            var order = Enumerable.Range(0, Layers).OrderBy(l => balance.Layers[l].Balancedness).ThenBy(l => l).ToArray();
            Assert.Equal(order.Select(l => l.ToString(CultureInfo.InvariantCulture)), rows.Select(cells => cells[0]));
            foreach (var cells in rows)
            {
                var b = balance.Layers[int.Parse(cells[0], CultureInfo.InvariantCulture)];
                Assert.Equal(
                    [
                        Figure(b.Balancedness), b.MaxMeanRatio.ToString("0.00", CultureInfo.InvariantCulture), b.CoefficientOfVariation.ToString("0.000", CultureInfo.InvariantCulture),
                        b.GiniCoefficient.ToString("0.000", CultureInfo.InvariantCulture), b.Top10PercentShare.ToString("0.000", CultureInfo.InvariantCulture),
                        b.Load == 0 ? "-" : $"{b.HottestExpert}", b.Load == 0 ? "-" : $"{b.ColdestExpert}", $"{b.DeadExperts}",
                    ],
                    cells[1..]);
            }

            // Layer 0 (no load) and layer 3 (even) both read 1: layer 0 comes first, and the note on "-" is there though the last row has load.
            Assert.Equal(["0", "3"], rows[^2..].Select(cells => cells[0]));
            Assert.Contains("  (-: a layer without load, whose balancedness is 1 by convention: nothing to balance)", Section(lines, span));
        }
    }

    /// <summary>The layers past those shown are counted; none are when every layer is shown.</summary>
    [Theory]
    [InlineData(Layers, null)]
    [InlineData(0, null)]
    [InlineData(3, "  ... 1 more layer, at least as well balanced (--layers-shown 0 or --json lists every layer)")]
    [InlineData(1, "  ... 3 more layers, at least as well balanced (--layers-shown 0 or --json lists every layer)")]
    public void TheLayersNotShownAreCounted(int shown, string? expected)
    {
        using var model = Model();
        using var text = new StringWriter();

        ModelReport.Print(text, model.Summary(), ModelCounts.Of(model), "heading", engine: null, shown: shown);

        var more = text.ToString().ReplaceLineEndings("\n").Split('\n').Where(line => line.Contains("more layer", StringComparison.Ordinal)).Distinct().ToArray();
        Assert.Equal(expected is null ? [] : [expected], more);
    }

    /// <summary>The heading names the file that ran, which may hold a line break or a terminal escape: one line, as written.</summary>
    [Fact]
    public void AHeadingNamingAFileWithALineBreakIsItsFirstLineShownAsWritten()
    {
        using var model = Model();
        using var text = new StringWriter();

        ModelReport.Print(text, model.Summary(), ModelCounts.Of(model), "report a\nb\u001b[31m.json: 2 layers", engine: null);

        Assert.Equal(@"report a\nb\u001b[31m.json: 2 layers", text.ToString().ReplaceLineEndings("\n").Split('\n')[0]);
    }

    /// <summary>The checks judge the load over the window, as the alerting rules do: an expert dead in the window is named though it had tokens before.</summary>
    [Fact]
    public void TheLoadChecksAreOverTheWindow()
    {
        using var model = Model();
        var summary = model.Summary();
        var counts = ModelCounts.Of(model);
        var deadInWindow = Enumerable.Range(0, Layers).Where(l => summary.Window.Layers[l].Load > 0 && summary.Window.Layers[l].DeadExperts > 0).ToArray();
        Assert.Equal([1], deadInWindow);
        Assert.Equal(0, summary.SinceStart.Layers[1].DeadExperts);

        var lines = Text(summary, counts);

        var checks = Section(lines, "Checks at ");
        // Layer 0 (no load) has every expert dead, layer 1 one.
        var deadLayers = Enumerable.Range(0, Layers).Where(l => summary.Window.Layers[l].DeadExperts > 0).ToArray();
        Assert.Equal(($"{deadLayers.Length} layers", $"layers {string.Join(", ", deadLayers)}; {summary.Window.Layers.Sum(l => l.DeadExperts)} experts in all"), Cell(checks, "experts without a token"));
    }

    /// <summary>The counts' notes: the invalid ids' share of the ids other than -1, the drops' of the routed slots.</summary>
    [Fact]
    public void TheCountsNotesAreShares()
    {
        using var model = Model();
        var counts = ModelCounts.Of(model);
        Assert.Equal((UInt128)(Steps * Invalid), counts.InvalidExpertIds);

        var section = Section(Text(model.Summary(), counts), "Counts, all layers, since the start");

        var invalid = 100.0 * Steps * Invalid / ((Steps * Invalid) + (double)counts.RoutedSlots);
        Assert.Equal(($"{Steps * Invalid}", $"{invalid.ToString("0.##", CultureInfo.InvariantCulture)} % of the ids other than -1: in no expert's load"), Cell(section, "invalid expert ids"));
        Assert.Equal(($"0 to {Steps * Tokens:N0}", "padding left out"), Cell(section, "tokens per layer"));
        var dropped = 100.0 * (double)counts.SlotsDropped / (double)counts.RoutedSlots;
        Assert.Equal(($"{counts.SlotsDropped:N0}", $"{dropped.ToString("0.##", CultureInfo.InvariantCulture)} % of routed slots, over {Capacity} per expert per step"), Cell(section, "slots dropped"));
    }

    /// <summary>
    /// The section over EP ranks is the ranks' summary, not the experts': layer 0 routes to experts 0 and 4 alone (the
    /// worst over experts, even over 2 ranks of 4), layer 1 to experts 0 to 5 evenly (the worst over ranks: 4 of its 6 on rank 0).
    /// </summary>
    [Fact]
    public void TheRanksSectionIsTheRanksSummary()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = Experts });
        int[] ids = [.. Enumerable.Range(0, Tokens * TopK).Select(slot => slot % 2 * 4), .. Enumerable.Range(0, Tokens * TopK).Select(slot => slot % 6)];
        model.RecordStep(ids, Tokens, TopK);
        var ranks = EpBalance.Of(model, 2);
        var summary = model.Summary();
        var balance = ranks.Summary.Window;
        Assert.Equal((0, 1), (summary.Window.WorstLayer, balance.WorstLayer));
        Assert.NotEqual(Figure(summary.Window.TokenWeightedBalancedness), Figure(balance.TokenWeightedBalancedness));

        var lines = Text(summary, ModelCounts.Of(model), ranks: ranks);

        var section = Section(lines, "Model over 2 EP ranks (4 experts each, in order, as vLLM places them before a rebalance), over its 1 step");
        Assert.Equal((Figure(balance.TokenWeightedBalancedness), "vLLM's logged balancedness"), Cell(section, "token-weighted balancedness"));
        Assert.Equal((Figure(balance.MinBalancedness), $"layer {balance.WorstLayer}, the worst"), Cell(section, "min balancedness"));
        Assert.Equal((Figure(balance.MeanBalancedness), ""), Cell(section, "mean balancedness"));
        Assert.Equal((Figure(balance.MaxBalancedness), $"layer {balance.BestLayer}, the best"), Cell(section, "max balancedness"));
    }

    /// <summary>The JSON's spans are the summary's own, window and since the start, for the experts and for the ranks; counts as counted.</summary>
    [Fact]
    public void TheJsonSpansAreTheSummarysOwn()
    {
        using var model = Model();
        var summary = model.Summary();
        var counts = ModelCounts.Of(model);
        var ranks = EpBalance.Of(model, 2);
        using var text = new StringWriter();

        ModelReport.WriteJson(text, summary, counts, Experts, ranks: ranks, emptyStepsLeftOut: 3);

        using var json = JsonDocument.Parse(text.ToString());
        var root = json.RootElement;
        Assert.Equal(Window, root.GetProperty("window_steps").GetInt32());
        Assert.Equal(3, root.GetProperty("empty_steps_left_out").GetInt32());
        Assert.False(root.TryGetProperty("merged_parts", out _));
        Assert.Equal((0, Steps * Tokens), (root.GetProperty("tokens_per_layer").GetProperty("min").GetInt32(), root.GetProperty("tokens_per_layer").GetProperty("max").GetInt32()));
        Assert.Equal(Capacity, root.GetProperty("expert_capacity").GetInt32());
        Assert.Equal(
            counts.Layers.Select(layer => layer.SlotsDropped),
            root.GetProperty("layer_counts").EnumerateArray().Select(layer => layer.GetProperty("slots_dropped").GetUInt64()));
        foreach (var (spans, of) in new[] { (root, summary), (root.GetProperty("ep_ranks"), ranks.Summary) })
        {
            foreach (var (name, balance) in new[] { ("window", of.Window), ("since_start", of.SinceStart) })
            {
                var span = spans.GetProperty(name);
                Assert.Equal(balance.MinBalancedness, span.GetProperty("min_balancedness").GetDouble());
                Assert.Equal(balance.MeanBalancedness, span.GetProperty("mean_balancedness").GetDouble());
                Assert.Equal(balance.TokenWeightedBalancedness, span.GetProperty("token_weighted_balancedness").GetDouble());
                Assert.Equal((balance.WorstLayer, balance.BestLayer), (span.GetProperty("worst_layer").GetInt32(), span.GetProperty("best_layer").GetInt32()));
                var perLayer = span.GetProperty("per_layer").EnumerateArray().ToArray();
                Assert.Equal(balance.Layers.Select(l => (l.Load, l.MinLoad, l.MaxLoad, l.DeadExperts)), perLayer.Select(l => (l.GetProperty("load").GetUInt64(), l.GetProperty("min_load").GetUInt64(), l.GetProperty("max_load").GetUInt64(), l.GetProperty("dead_experts").GetInt32())));
            }
        }
    }

    /// <summary>
    /// step_time: the percentile from the 20th step timed (as the text report), over the newest 1,000 at most; the
    /// slowest step, not the mean, as max_ms.
    /// </summary>
    [Theory]
    [InlineData(TimeSpread.MinForPercentile - 1)]
    [InlineData(TimeSpread.MinForPercentile)]
    [InlineData(LatencyStats.WindowSize + 5)]
    public void TheStepTimeIsTheStepsTimed(int timed)
    {
        using var model = Model();
        var times = new StepTimes { Timed = "as this test timed it" };
        for (var step = 0; step < timed; step++)
        {
            times.Add(TimeSpan.FromMilliseconds(1 + (step % 7)), Tokens);
        }

        using var text = new StringWriter();
        ModelReport.WriteJson(text, model.Summary(), ModelCounts.Of(model), Experts, times);

        using var json = JsonDocument.Parse(text.ToString());
        var time = json.RootElement.GetProperty("step_time");
        Assert.Equal(timed, time.GetProperty("timed_steps").GetInt32());
        Assert.Equal(Math.Min(timed, LatencyStats.WindowSize), time.GetProperty("p95_steps").GetInt32());
        Assert.Equal(timed >= TimeSpread.MinForPercentile ? JsonValueKind.Number : JsonValueKind.Null, time.GetProperty("p95_ms").ValueKind);
        Assert.Equal(7, time.GetProperty("max_ms").GetDouble(), 9);
        Assert.Equal(times.Latency.AverageLatency(), time.GetProperty("mean_ms").GetDouble(), 12);
    }

    /// <summary>
    /// The tokens a second, text and JSON alike: the timed steps' tokens (once for all layers) over their time, and
    /// no figure where the steps took 0 ms in all, not a rate of 0.
    /// </summary>
    [Theory]
    [InlineData(0.0)]
    [InlineData(2.5)]
    public void TheTokensASecondAreTheTimedStepsTokensOverTheirTime(double milliseconds)
    {
        using var model = Model();
        var times = new StepTimes { Timed = "as this test timed it" };
        times.Add(TimeSpan.FromMilliseconds(milliseconds), Tokens);
        times.Add(TimeSpan.FromMilliseconds(2 * milliseconds), Tokens);
        double? expected = milliseconds > 0 ? 2.0 * Tokens / (3 * milliseconds / 1000) : null;

        using var text = new StringWriter();
        ModelReport.Print(text, model.Summary(), ModelCounts.Of(model), "heading", engine: null, times: times);
        using var json = new StringWriter();
        ModelReport.WriteJson(json, model.Summary(), ModelCounts.Of(model), Experts, times);

        var line = Assert.Single(text.ToString().ReplaceLineEndings("\n").Split('\n'), l => l.TrimStart().StartsWith("tokens per second", StringComparison.Ordinal));
        Assert.Matches(expected is { } rate ? $@"^  tokens per second +{Regex.Escape(rate.ToString("#,0", CultureInfo.InvariantCulture))} " : "^  tokens per second +- +the timed steps took 0 ms in all$", line);
        using var document = JsonDocument.Parse(json.ToString());
        var served = document.RootElement.GetProperty("step_time").GetProperty("tokens_per_second");
        if (expected is { } value)
        {
            Assert.Equal(value, served.GetDouble(), 9);
        }
        else
        {
            Assert.Equal(JsonValueKind.Null, served.ValueKind);
        }
    }

    /// <summary>The periodic line gives the window's worst layer and its balancedness.</summary>
    [Fact]
    public void APeriodicLineIsTheWindowsWorst()
    {
        using var model = Model();
        var summary = model.Summary();
        Assert.NotEqual(summary.Window.WorstLayer, summary.Window.BestLayer);

        var line = ModelReport.Periodic(summary, new StepTimes { Timed = "" }, 10, 20, TimeSpan.FromSeconds(83.4));

        Assert.Equal(
            $"after 10 of 20 steps (83.4 s): window balancedness min {Figure(summary.Window.MinBalancedness)} (layer {summary.Window.WorstLayer}), mean {Figure(summary.Window.MeanBalancedness)}; no step timed yet",
            line);
    }

    /// <summary>
    /// One span where the window holds every step, or all their load (the steps before it padding alone), named for which;
    /// the window and the start where it holds neither. Layers of one count of tokens give it once, not as a range.
    /// </summary>
    [Theory]
    [InlineData(0, 3, "Model, over all 3 steps (the window holds them all)")]
    [InlineData(2, 3, "Model, over all 5 steps (the window, 3 steps long, holds all their load)")]
    [InlineData(0, 5, "Model, over the window, the newest 3 steps")]
    public void TheSpansAreThoseTheWindowDoesNotHold(int paddingSteps, int routedSteps, string first)
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 3 });
        for (var step = 0; step < paddingSteps + routedSteps; step++)
        {
            model.RecordStep(step < paddingSteps ? [-1, -1, -1, -1] : [0, 1, step % 4, 3], tokens: 2, topK: 1);
        }

        var lines = Text(model.Summary(), ModelCounts.Of(model));

        var spans = lines.Where(line => line.StartsWith("Model, ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(first, spans[0]);
        Assert.Equal(paddingSteps + routedSteps > 3 && paddingSteps == 0 ? ["Model, since the start, 5 steps"] : [], spans[1..]);
        // Padding is no token: the layers routed 2 tokens a step in the steps of other ids.
        Assert.Equal($"{2 * routedSteps}", Cell(Section(lines, "Counts, all layers, since the start"), "tokens per layer").Value);
    }

    /// <summary>Without a capacity the JSON names no drops, neither the model's nor a layer's.</summary>
    [Fact]
    public void TheJsonOfAModelWithoutACapacityNamesNoDrops()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
        model.RecordStep([0, 1, 2, 3], tokens: 2, topK: 1);
        using var text = new StringWriter();

        ModelReport.WriteJson(text, model.Summary(), ModelCounts.Of(model), experts: 4);

        using var json = JsonDocument.Parse(text.ToString());
        Assert.False(json.RootElement.TryGetProperty("slots_dropped", out _));
        Assert.False(json.RootElement.TryGetProperty("expert_capacity", out _));
        var layers = json.RootElement.GetProperty("layer_counts").EnumerateArray().ToArray();
        Assert.Equal(2, layers.Length);
        Assert.All(layers, layer => Assert.Equal(["layer", "tokens", "routed_slots", "invalid_expert_ids"], layer.EnumerateObject().Select(field => field.Name)));
    }

    private static string[] Text(ModelRoutingSummary summary, ModelCounts counts, EpBalance? ranks = null)
    {
        using var text = new StringWriter();
        ModelReport.Print(text, summary, counts, "heading", engine: null, ranks: ranks, shown: 0);
        return text.ToString().ReplaceLineEndings("\n").Split('\n');
    }

    /// <summary>The lines from the one starting <paramref name="heading"/> to the next empty line.</summary>
    private static string[] Section(string[] lines, string heading) =>
        [.. lines.SkipWhile(line => !line.StartsWith(heading, StringComparison.Ordinal)).TakeWhile(line => line.Length > 0)];

    /// <summary>A report line's value and note, by its label.</summary>
    private static (string Value, string Note) Cell(string[] section, string label)
    {
        var line = Assert.Single(section, line => line.Length > 36 && line[2..36].TrimEnd() == label);
        return (line[37..Math.Min(51, line.Length)].Trim(), line.Length > 54 ? line[54..] : "");
    }

    private static string Figure(double value) => value.ToString("0.000", CultureInfo.InvariantCulture);
}
