using System.Text.Json;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Serialization;
using SkiaSharp;
using static MoeGpuStats.Tests.Support.ModelTrace;
using static MoeGpuStats.Tests.Support.Moegs;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary>
/// <c>moegs replay</c> run in-process: files of one layer and, with a layers axis, of a whole model (each layer
/// as if replayed alone, the window load for <c>plan</c>, the picture), the warnings and one-line errors,
/// the endpoint served after the run; and (in ReplayCommandTests.Traces.cs) traces as they are recorded
/// from real models.
/// </summary>
public sealed partial class ReplayCommandTests : IDisposable
{
    private const int Steps = 5;
    private const int Layers = 3;
    private const int Tokens = 6;
    private const int TopK = 2;
    private const int Experts = 8;

    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-layers-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>
    /// A 4-D file read without --layout is read as [steps, layers, tokens, k] and says so, naming the
    /// layout of stacked vLLM steps, which has the same rank; with --layout given it says nothing. The shape's sizes
    /// have no thousands separator, which would read as more dimensions ([1,100, 3, 6, 2]).
    /// </summary>
    [Theory]
    [InlineData(Steps)]
    [InlineData(1_100)]
    public void TheDefaultFourDimensionalLayoutIsNamed(int steps)
    {
        var npy = WriteInt32("four.npy", $"{steps}, {Layers}, {Tokens}, {TopK}", Ids(steps, Layers, Tokens, seed: 4));

        var (code, _, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"note: read as [steps,layers,tokens,k] = [{steps}, {Layers}, {Tokens}, {TopK}], the default for 4-D; give --layout steps,tokens,layers,k if each step is [tokens, layers, k] (vLLM's routed experts, stacked): the ids cannot tell.", error);

        (code, _, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--layout", "steps,layers,tokens,k");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.DoesNotContain("the default for 4-D", error);
    }

    /// <summary>--layout is read whatever its case and spaces, as the same layout written plainly.</summary>
    [Fact]
    public void LayoutIsReadWhateverItsCaseAndSpaces()
    {
        var npy = WriteInt32("three.npy", $"{Steps}, {Tokens}, {TopK}", Ids(Steps, 1, Tokens, seed: 5));

        var (code, output, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--layout", "Steps, Tokens, K", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        var (plainCode, plain, plainError) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--layout", "steps,tokens,k", "--json");
        Assert.True(plainCode == ExitCodes.Ok, plainError);
        Assert.Equal(Counts(plain), Counts(output));
    }

    /// <summary>A one-layer report's batches and tokens per expert: what a replay counts, without its timings.</summary>
    private static (ulong Routings, string Counts) Counts(string report)
    {
        using var json = JsonDocument.Parse(report);
        return (json.RootElement.GetProperty("total_routings").GetUInt64(), json.RootElement.GetProperty("expert_token_counts").GetRawText());
    }

    /// <summary>
    /// A replay with layers takes --ep-size as simulate does: ranks of the trace's experts in order, none
    /// less balanced than the experts they hold; one that does not divide the experts is refused.
    /// </summary>
    [Fact]
    public void EpSizeReportsTheBalanceOverRanksOfTheTrace()
    {
        var npy = WriteInt32("ranks.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", Ids(Steps, Layers, Tokens, seed: 6));

        var (code, output, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--ep-size", "2", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        using var report = JsonDocument.Parse(output);
        var ep = report.RootElement.GetProperty("ep_ranks");
        Assert.Equal(2, ep.GetProperty("ranks").GetInt32());
        Assert.Equal(Experts / 2, ep.GetProperty("experts_per_rank").GetInt32());
        Assert.True(ep.GetProperty("window").GetProperty("token_weighted_balancedness").GetDouble()
            >= report.RootElement.GetProperty("window").GetProperty("token_weighted_balancedness").GetDouble());

        (code, _, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--ep-size", "3");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal($"--ep-size 3: {Experts} experts do not split evenly over 3 ranks; give a divisor of {Experts}.", error.Trim());
    }

    /// <summary>A layer that routed nothing (padding alone) names no hottest or coldest expert in the table, and says why its balancedness is 1.</summary>
    [Fact]
    public void ALayerWithoutLoadNamesNoHottestOrColdestExpert()
    {
        var ids = Ids(Steps, Layers, Tokens, seed: 3);
        for (var step = 0; step < Steps; step++)
        {
            Array.Fill(ids, -1, ((step * Layers) + 1) * Tokens * TopK, Tokens * TopK);
        }

        var (code, output, error) = Moegs.Run("replay", WriteInt32("idle.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids), "--experts", $"{Experts}");

        Assert.True(code == ExitCodes.Ok, error);
        var rows = output.Split('\n').Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Where(cells => cells.Length == 9 && int.TryParse(cells[0], out _)).ToArray();
        Assert.Equal(["1", "1.000", "1.00", "0.000", "0.000", "0.125", "-", "-", "8"], rows.Single(cells => cells[0] == "1"));
        Assert.All(rows.Where(cells => cells[0] != "1"), cells => Assert.True(int.TryParse(cells[6], out _) && int.TryParse(cells[7], out _)));
        Assert.Contains("(-: a layer without load, whose balancedness is 1 by convention: nothing to balance)", output);

        // Tokens, padding left out: none in layer 1, the most in another.
        var most = Enumerable.Range(0, Layers).Max(layer => Enumerable.Range(0, Steps * Tokens)
            .Count(row => Enumerable.Range(0, TopK).Any(k => ids[((((row / Tokens) * Layers) + layer) * Tokens * TopK) + ((row % Tokens) * TopK) + k] != -1)));
        Assert.Matches($@"\n  tokens per layer +0 to {most:N0}   padding left out\n", output);
    }

    /// <summary>A model replay of padding alone says what such steps do to a model, draws its picture (grey: no load) and saves its snapshot (the picture threw, and the snapshot was lost with it).</summary>
    [Fact]
    public void AReplayOfPaddingAloneDrawsAndSaves()
    {
        var npy = WriteInt32("padding.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", Enumerable.Repeat(-1, Steps * Layers * Tokens * TopK).ToArray());
        var (plot, saved) = (Path.Combine(_folder.FullName, "padding.png"), Path.Combine(_folder.FullName, "padding.json"));

        var (code, _, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--plot", plot, "--save", saved);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"warning: {Steps} steps held padding alone (-1), no token (the first is step 0): each counts as a step with no load, which takes a place in the window (--window)", error);
        Assert.True(new FileInfo(plot).Length > 0);
        using var read = SnapshotFile.Load(saved);
        Assert.Equal((ulong)Steps, read.Model!.Summary().Steps);
    }

    /// <summary>Each layer of a 4-D replay reports what one layer's own replay and a one-layer model report.</summary>
    [Fact]
    public void EachLayerOfAFourDimensionalReplayEqualsThatLayerReplayedAlone()
    {
        var ids = Ids(Steps, Layers, Tokens, seed: 3);
        var npy = WriteInt32("model.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids);

        var (code, output, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        using var report = JsonDocument.Parse(output);
        Assert.Equal(Steps, report.RootElement.GetProperty("steps").GetInt32());
        Assert.Equal(Steps - 1, report.RootElement.GetProperty("step_time").GetProperty("timed_steps").GetInt32());
        var tokens = report.RootElement.GetProperty("tokens_per_layer");
        Assert.Equal((Steps * Tokens, Steps * Tokens), (tokens.GetProperty("min").GetInt32(), tokens.GetProperty("max").GetInt32()));
        var perLayer = report.RootElement.GetProperty("since_start").GetProperty("per_layer").EnumerateArray().ToArray();
        Assert.Equal(Layers, perLayer.Length);

        // Python's MoeModelStats.summary() names the span's and a layer's figures the same (python/tests/test_moegs.py).
        Assert.Equal(
            ["min_balancedness", "p10_balancedness", "median_balancedness", "mean_balancedness", "max_balancedness", "token_weighted_balancedness", "worst_layer", "best_layer", "per_layer"],
            report.RootElement.GetProperty("since_start").EnumerateObject().Select(p => p.Name));
        Assert.Equal(
            ["layer", "load", "mean_load", "max_load", "min_load", "balancedness", "max_mean_ratio", "coefficient_of_variation", "hottest_expert", "coldest_expert", "dead_experts", "gini_coefficient", "top10_percent_share"],
            perLayer[0].EnumerateObject().Select(p => p.Name));
        for (var layer = 0; layer < Layers; layer++)
        {
            var slice = LayerSlice(ids, layer);
            using var alone = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 1, Experts = Experts });
            for (var step = 0; step < Steps; step++)
            {
                alone.RecordStep(slice.AsSpan(step * Tokens * TopK, Tokens * TopK), Tokens, TopK);
            }

            var expected = alone.Summary().SinceStart.Layers[0];
            var got = perLayer[layer];
            Assert.Equal(layer, got.GetProperty("layer").GetInt32());
            Assert.Equal(expected.Load, got.GetProperty("load").GetUInt64());
            Assert.Equal(expected.Balancedness, got.GetProperty("balancedness").GetDouble());
            Assert.Equal(expected.MaxMeanRatio, got.GetProperty("max_mean_ratio").GetDouble());
            Assert.Equal(expected.CoefficientOfVariation, got.GetProperty("coefficient_of_variation").GetDouble());
            Assert.Equal(expected.HottestExpert, got.GetProperty("hottest_expert").GetInt32());
            Assert.Equal(expected.ColdestExpert, got.GetProperty("coldest_expert").GetInt32());
            Assert.Equal(expected.DeadExperts, got.GetProperty("dead_experts").GetInt32());
            Assert.Equal(expected.GiniCoefficient, got.GetProperty("gini_coefficient").GetDouble());
            Assert.Equal(expected.Top10PercentShare, got.GetProperty("top10_percent_share").GetDouble());

            // And the single-layer path of replay agrees: the same slice as a [steps, tokens, k] file.
            var saved = Path.Combine(_folder.FullName, $"layer{layer}.json");
            var sliceFile = WriteInt32($"layer{layer}.npy", $"{Steps}, {Tokens}, {TopK}", slice);
            var (sliceCode, _, sliceError) = Moegs.Run("replay", sliceFile, "--layout", "steps,tokens,k", "--experts", $"{Experts}", "--save", saved);
            Assert.True(sliceCode == ExitCodes.Ok, sliceError);
            using var single = RoutingStatsFile.Load(saved);
            var counts = single.ExpertTokenCounts;
            Assert.Equal(expected.Load, counts.Aggregate(0UL, (sum, count) => sum + count));
            Assert.Equal(expected.HottestExpert, counts.ToList().LastIndexOf(counts.Max()));
            Assert.Equal(expected.DeadExperts, counts.Count(count => count == 0));
        }

        var window = report.RootElement.GetProperty("window");
        var sorted = perLayer.Select(layer => layer.GetProperty("balancedness").GetDouble()).Order().ToArray();
        Assert.Equal(sorted[0], window.GetProperty("min_balancedness").GetDouble());
        var rank = 0.1 * (sorted.Length - 1);
        var below = (int)Math.Floor(rank);
        Assert.Equal(sorted[below] + ((sorted[Math.Min(below + 1, sorted.Length - 1)] - sorted[below]) * (rank - below)), window.GetProperty("p10_balancedness").GetDouble(), 12);
    }

    /// <summary>[steps, tokens, layers, k] is reordered as it is read: the report equals that of the same ids stored layers first.</summary>
    [Fact]
    public void TokensFirstFilesReportAsTheSameIdsStoredLayersFirst()
    {
        var ids = Ids(Steps, Layers, Tokens, seed: 5);
        var layersFirst = WriteInt32("lf.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids);
        var tokensFirst = WriteInt32("tf.npy", $"{Steps}, {Tokens}, {Layers}, {TopK}", TokensFirst(ids, Steps));

        var (code, expected, error) = Moegs.Run("replay", layersFirst, "--experts", $"{Experts}", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        var (tokensCode, got, tokensError) = Moegs.Run("replay", tokensFirst, "--layout", "steps,tokens,layers,k", "--experts", $"{Experts}", "--json");
        Assert.True(tokensCode == ExitCodes.Ok, tokensError);
        Assert.Equal(Figures(expected), Figures(got));

        // One step, 3-D: [tokens, layers, k] against [layers, tokens, k].
        var first = ids[..(Layers * Tokens * TopK)];
        var (oneCode, one, _) = Moegs.Run("replay", WriteInt32("one.npy", $"{Layers}, {Tokens}, {TopK}", first), "--layout", "layers,tokens,k", "--experts", $"{Experts}", "--json");
        var (otherCode, other, _) = Moegs.Run("replay", WriteInt32("other.npy", $"{Tokens}, {Layers}, {TopK}", TokensFirst(first, 1)), "--layout", "tokens,layers,k", "--experts", $"{Experts}", "--json");
        Assert.Equal((ExitCodes.Ok, ExitCodes.Ok), (oneCode, otherCode));
        Assert.Equal(Figures(one), Figures(other));
    }

    [Fact]
    public void AThreeDimensionalFileWithoutLayoutAsksForOneInsteadOfGuessing()
    {
        var npy = WriteInt32("three.npy", $"{Steps}, {Tokens}, {TopK}", Ids(Steps, 1, Tokens, seed: 1));
        var (code, output, error) = Moegs.Run("replay", npy);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Equal($"{npy}: shape (5, 6, 2) could be [steps, tokens, k], [layers, tokens, k] or [tokens, layers, k]; give --layout steps,tokens,k, layers,tokens,k or tokens,layers,k.", error.Trim());
    }

    [Theory]
    [InlineData("tokens,steps,k", "")]
    [InlineData("steps,layer,tokens,k", "Did you mean steps,layers,tokens,k? ")]
    public void AnUnknownLayoutIsOneLineListingTheLayoutsByRank(string given, string meant)
    {
        var npy = WriteInt32("two.npy", $"{Tokens}, {TopK}", Ids(1, 1, Tokens, seed: 1));
        var (code, output, error) = Moegs.Run("replay", npy, "--layout", given);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.StartsWith(
            $"--layout {given}: give one for the file's dimensions: 4-D steps,layers,tokens,k or steps,tokens,layers,k; 3-D layers,tokens,k, tokens,layers,k or steps,tokens,k; 2-D tokens,k. {meant}Run ",
            error);
    }

    [Theory]
    [InlineData("steps,layers,tokens,k", "give tokens,k.")]
    [InlineData("layers,tokens,k", "give tokens,k.")]
    public void ALayoutOfAnotherRankThanTheFileIsAUsageError(string layout, string advice)
    {
        var npy = WriteInt32("two.npy", $"{Tokens}, {TopK}", Ids(1, 1, Tokens, seed: 1));
        var (code, output, error) = Moegs.Run("replay", npy, "--layout", layout);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.StartsWith($"--layout {layout}: {npy} has shape (6, 2), 2 dimensions", error);
        Assert.EndsWith(advice, error.Trim());
    }

    /// <summary>The window load is written as plan reads it: the newest --window steps' counts per layer and expert.</summary>
    [Theory]
    [InlineData("load.npy")]
    [InlineData("load.json")]
    public void TheWindowLoadIsWrittenForPlan(string name)
    {
        var ids = Ids(Steps, Layers, Tokens, seed: 7);
        var npy = WriteInt32("model.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids);
        var load = Path.Combine(_folder.FullName, name);

        var (code, _, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--window", "2", "--window-load", load);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"window load: {load}", error);
        var matrix = LoadMatrix.Read(load);
        Assert.Equal((Layers, Experts), (matrix.GetLength(0), matrix.GetLength(1)));
        var expected = new long[Layers, Experts];
        for (var step = Steps - 2; step < Steps; step++)
        {
            for (var layer = 0; layer < Layers; layer++)
            {
                foreach (var id in ids.AsSpan(((step * Layers) + layer) * Tokens * TopK, Tokens * TopK))
                {
                    if (id >= 0)
                    {
                        expected[layer, id]++;
                    }
                }
            }
        }

        Assert.Equal(expected, matrix);
        if (name.EndsWith(".npy", StringComparison.Ordinal))
        {
            // As np.save writes version 1.0: the header, ended by a newline, pads the data to a 64-byte boundary.
            var bytes = File.ReadAllBytes(load);
            var data = 10 + bytes[8] + (bytes[9] << 8);
            Assert.Equal((0, (byte)'\n', Layers * Experts * sizeof(long)), (data % 64, bytes[data - 1], bytes.Length - data));
        }

        var (planCode, plan, planError) = Moegs.Run("plan", load, "--replicas", "8", "--gpus", "2", "--json");
        Assert.True(planCode == ExitCodes.Ok, planError);
        using var placed = JsonDocument.Parse(plan);
        Assert.Equal(Layers, placed.RootElement.GetProperty("layers").GetInt32());
    }

    [Theory]
    [InlineData("load.txt", "give a name ending in one of those")]
    [InlineData("nodir/load.npy", "does not exist")]
    public void TheWindowLoadPathIsCheckedBeforeTheRun(string relative, string expected)
    {
        var npy = WriteInt32("model.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", Ids(Steps, Layers, Tokens, seed: 7));
        var given = Path.Combine(_folder.FullName, relative);
        var (code, output, error) = Moegs.Run("replay", npy, "--window-load", given);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.StartsWith($"--window-load {given}: ", error);
        Assert.Contains(expected, error);
        Assert.Equal([npy], Directory.GetFiles(_folder.FullName, "*", SearchOption.AllDirectories));
    }

    /// <summary>
    /// A few steps of a large model replay with the default window cut to the steps where 1,000 would
    /// pass the ring's limit (the figures are the same: the window holds every step); a window given
    /// that passes it is refused by name.
    /// </summary>
    [Fact]
    public void TheDefaultWindowOfALargeModelIsCutToTheStepsAGivenOneIsNot()
    {
        const int layers = 600, experts = 4096;
        var npy = WriteInt32("large.npy", $"2, {layers}, 1, 1", [.. Enumerable.Range(0, 2 * layers).Select(i => i % experts)]);

        var (code, output, error) = Run("replay", npy, "--experts", $"{experts}", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        using (var report = JsonDocument.Parse(output))
        {
            Assert.Equal(2, report.RootElement.GetProperty("window_steps").GetInt32());
        }

        var (given, _, refused) = Run("replay", npy, "--experts", $"{experts}", "--window", "1000");
        Assert.Equal(ExitCodes.Usage, given);
        Assert.StartsWith("--window 1000: the window ring would hold 1,000 steps x 600 layers x 4,096 experts = 2,457,600,000 counts", refused);
        Assert.EndsWith("Give --window 873 or less.", refused.TrimEnd());
    }

    /// <summary>
    /// A model's endpoint publishes at most 250,000 series: more are refused by the option that makes
    /// them, before the run; so is a top-K above the experts.
    /// </summary>
    [Theory]
    [InlineData("--metrics-expert-series", "--metrics-expert-series: 1,024 layers × 256 experts make 524,288 series (2 per layer and expert), 557,067 in all; an endpoint publishes at most 250,000")]
    [InlineData("--metrics-top-experts 256", "--metrics-top-experts 256: 1,024 layers make 1,048,576 series (4 per layer and position: a hot and a cold expert and their loads), 1,060,875 in all; an endpoint publishes at most 250,000: give at most 58.")]
    [InlineData("--metrics-top-experts 257", "--metrics-top-experts 257: a layer has 256 experts; give 0 to 256.")]
    public void MetricsAnEndpointCannotPublishAreRefused(string option, string expected)
    {
        var npy = WriteInt32("wide.npy", "1, 1024, 1, 1", new int[1024]);

        var (code, output, error) = Run(["replay", npy, "--experts", "256", "--metrics-port", "1", .. option.Split(' ')]);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.StartsWith(expected, error);
    }

    [Fact]
    public void ModelOptionsAreRefusedWithoutLayersOrWithoutAnEndpoint()
    {
        var model = WriteInt32("model.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", Ids(Steps, Layers, Tokens, seed: 7));
        var (code, _, error) = Moegs.Run("replay", model, "--metrics-top-experts", "3");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--metrics-top-experts: shapes the metrics of --metrics-port, which was not given.", error.Trim());

        var layer = WriteInt32("layer.npy", $"{Tokens}, {TopK}", Ids(1, 1, Tokens, seed: 7));
        (code, _, error) = Moegs.Run("replay", layer, "--window-load", Path.Combine(_folder.FullName, "w.npy"));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith("--window-load: the window load is a model's", error);

        (code, _, error) = Moegs.Run("replay", layer, "--metrics-port", "1", "--metrics-expert-series");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith("--metrics-expert-series: shapes a whole model's metrics", error);

        (code, _, error) = Moegs.Run("replay", layer, "--window", "5");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith($"--window 5: the sliding window of expert load is a model's; {layer} is read without layers", error);
    }

    /// <summary>Ids beyond --experts are counted, reported and warned about; a capacity's dropped slots are reported: the balance alone would hide both.</summary>
    [Fact]
    public void InvalidIdsAndDroppedSlotsAreReportedBesideTheBalance()
    {
        const int experts = 3;
        var ids = Ids(Steps, Layers, Tokens, seed: 13);
        var npy = WriteInt32("model.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids);
        var invalid = ids.Count(id => id >= experts);
        var routed = ids.Count(id => id is >= 0 and < experts);
        using var expected = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = Layers, Experts = experts, ExpertCapacity = 2 });
        for (var step = 0; step < Steps; step++)
        {
            expected.RecordStep(ids.AsSpan(step * Layers * Tokens * TopK, Layers * Tokens * TopK), Tokens, TopK);
        }

        var dropped = Enumerable.Range(0, Layers).Aggregate(0UL, (sum, l) =>
        {
            using var layer = expected.Layer(l);
            return sum + layer.SlotsDropped;
        });

        var (code, output, error) = Moegs.Run("replay", npy, "--experts", $"{experts}", "--capacity", "2", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"warning: {invalid:N0} ids (", error);
        Assert.Contains("is --experts right?", error);
        using var report = JsonDocument.Parse(output);
        Assert.Equal(invalid, report.RootElement.GetProperty("invalid_expert_ids").GetInt32());
        Assert.Equal(routed, report.RootElement.GetProperty("routed_slots").GetInt32());
        Assert.Equal(dropped, report.RootElement.GetProperty("slots_dropped").GetUInt64());
        Assert.True(dropped > 0, "the test's capacity should drop slots");

        // Each layer's counts, which the sums hide.
        var layerCounts = report.RootElement.GetProperty("layer_counts").EnumerateArray().ToArray();
        Assert.Equal(Layers, layerCounts.Length);
        for (var l = 0; l < Layers; l++)
        {
            using var layer = expected.Layer(l);
            var got = layerCounts[l];
            Assert.Equal(
                (l, layer.TotalTokens, layer.RoutedSlots, layer.InvalidExpertIds, layer.SlotsDropped),
                (got.GetProperty("layer").GetInt32(), got.GetProperty("tokens").GetUInt64(), got.GetProperty("routed_slots").GetUInt64(), got.GetProperty("invalid_expert_ids").GetUInt64(), got.GetProperty("slots_dropped").GetUInt64()));
        }

        Assert.Contains(layerCounts, layer => layer.GetProperty("invalid_expert_ids").GetUInt64() != layerCounts[0].GetProperty("invalid_expert_ids").GetUInt64());

        var (_, text, _) = Moegs.Run("replay", npy, "--experts", $"{experts}", "--capacity", "2");
        var line = text.Split('\n').Single(l => l.StartsWith("  invalid expert ids", StringComparison.Ordinal));
        Assert.Contains($" {invalid:N0} ", line);
        Assert.Contains(text.Split('\n'), l => l.StartsWith("  slots dropped", StringComparison.Ordinal) && l.Contains($" {dropped:N0} ", StringComparison.Ordinal));

        // The checks at the alerting rules' thresholds name both.
        Assert.Contains(text.Split('\n'), l => l.StartsWith("  ids naming no expert", StringComparison.Ordinal) && l.Contains($" {invalid:N0} ", StringComparison.Ordinal));
        Assert.Contains(text.Split('\n'), l => l.StartsWith("  over 1 % of slots dropped", StringComparison.Ordinal) && l.Contains(" layer", StringComparison.Ordinal));
    }

    /// <summary>Ids beyond --experts in one layer's trace bring the model's warning too: they are in no expert's share, so the shares no longer add up to k x 100 %.</summary>
    [Fact]
    public void InvalidIdsOfOneLayerAreWarnedAbout()
    {
        const int experts = 3;
        var ids = Ids(Steps, 1, Tokens, seed: 13);
        var invalid = ids.Count(id => id >= experts);
        var routed = ids.Count(id => id is >= 0 and < experts);
        Assert.True(invalid > 0, "the test's ids should name experts past --experts");

        var (code, _, error) = Moegs.Run("replay", WriteInt32("layer.npy", $"{Steps}, {Tokens}, {TopK}", ids), "--layout", "steps,tokens,k", "--experts", $"{experts}");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"warning: {invalid:N0} ids ({ModelCounts.Percent((ulong)invalid, (ulong)(invalid + routed))} of the ids other than -1) named no expert in [0, {experts}) and count as invalid, in no expert's load: is --experts right?", error);
    }

    /// <summary>The text report lists the worst layers first, at most ten, and says how many it leaves out.</summary>
    [Fact]
    public void TheReportListsTheWorstLayersFirst()
    {
        const int layers = 12;
        var ids = Ids(Steps, layers, Tokens, seed: 11);
        var npy = WriteInt32("twelve.npy", $"{Steps}, {layers}, {Tokens}, {TopK}", ids);
        var (jsonCode, json, _) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--json");
        Assert.Equal(ExitCodes.Ok, jsonCode);
        using var report = JsonDocument.Parse(json);
        var worstFirst = report.RootElement.GetProperty("since_start").GetProperty("per_layer").EnumerateArray()
            .Select(layer => (Layer: layer.GetProperty("layer").GetInt32(), Balancedness: layer.GetProperty("balancedness").GetDouble()))
            .OrderBy(layer => layer.Balancedness).Select(layer => layer.Layer).Take(10).ToArray();

        var (code, output, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("in 12 layers (steps,layers,tokens,k)", output);
        Assert.Contains("over all 5 steps (the window holds them all)", output);
        var rows = output.Split('\n').SkipWhile(line => !line.StartsWith("  layer  balancedness", StringComparison.Ordinal)).Skip(1).Take(11).ToArray();
        Assert.Equal(worstFirst, rows[..10].Select(row => int.Parse(row.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Contains("2 more layers, at least as well balanced (--layers-shown 0 or --json lists every layer)", rows[10]);

        // The best layer, which the list leaves out, is named beside the largest balancedness; the worst beside the smallest.
        var perLayer = report.RootElement.GetProperty("since_start").GetProperty("per_layer").EnumerateArray().Select(layer => layer.GetProperty("balancedness").GetDouble()).ToList();
        var best = perLayer.IndexOf(perLayer.Max());
        Assert.DoesNotContain(best, worstFirst);
        Assert.Equal(best, report.RootElement.GetProperty("since_start").GetProperty("best_layer").GetInt32());
        Assert.Equal(perLayer.Max(), report.RootElement.GetProperty("since_start").GetProperty("max_balancedness").GetDouble());
        Assert.Contains(output.Split('\n'), line => line.StartsWith("  max balancedness", StringComparison.Ordinal) && line.EndsWith($"layer {best}, the best", StringComparison.Ordinal));
        Assert.Contains(output.Split('\n'), line => line.StartsWith("  min balancedness", StringComparison.Ordinal) && line.EndsWith($"layer {worstFirst[0]}, the worst", StringComparison.Ordinal));
    }

    /// <summary>
    /// --layers-shown sets how many layers the report lists, 0 every one, for a replay and for report of its snapshot;
    /// given for one layer's trace or snapshot, it is refused naming why.
    /// </summary>
    [Fact]
    public void LayersShownSetsTheLayersTheReportLists()
    {
        const int layers = 12;
        var npy = WriteInt32("twelve.npy", $"{Steps}, {layers}, {Tokens}, {TopK}", Ids(Steps, layers, Tokens, seed: 11));
        var saved = Path.Combine(_folder.FullName, "twelve.json");
        static string[] Listed(string output) =>
            [.. output.Split('\n').SkipWhile(line => !line.StartsWith("  layer  balancedness", StringComparison.Ordinal)).Skip(1).TakeWhile(line => line.StartsWith("  ", StringComparison.Ordinal))];

        var (allCode, all, allError) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--layers-shown", "0", "--save", saved);
        Assert.True(allCode == ExitCodes.Ok, allError);
        Assert.Equal(layers, Listed(all).Length);
        Assert.DoesNotContain("more layer", all);

        var (fewCode, few, _) = Moegs.Run("report", saved, "--layers-shown", "3");
        Assert.Equal(ExitCodes.Ok, fewCode);
        Assert.Equal(4, Listed(few).Length);
        Assert.Contains("9 more layers, at least as well balanced", Listed(few)[3]);

        var one = WriteInt32("one.npy", $"{Steps}, {Tokens}, {TopK}", Ids(Steps, 1, Tokens, seed: 11));
        var (oneCode, _, oneError) = Moegs.Run("replay", one, "--layout", "steps,tokens,k", "--experts", $"{Experts}", "--layers-shown", "3");
        Assert.Equal(ExitCodes.Usage, oneCode);
        Assert.StartsWith("--layers-shown 3: the report's list of layers is a model's;", oneError.Trim());
        var oneSaved = Path.Combine(_folder.FullName, "one.json");
        Assert.Equal(ExitCodes.Ok, Moegs.Run("replay", one, "--layout", "steps,tokens,k", "--experts", $"{Experts}", "--save", oneSaved).Code);
        var (reportCode, _, reportError) = Moegs.Run("report", oneSaved, "--layers-shown", "3");
        Assert.Equal(ExitCodes.Usage, reportCode);
        Assert.Equal($"--layers-shown 3: the report's list of layers is a model's; {oneSaved} holds one layer.", reportError.Trim());

        var (negativeCode, _, negative) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--layers-shown", "-1");
        Assert.Equal(ExitCodes.Usage, negativeCode);
        Assert.StartsWith("--layers-shown -1: give the layers to list (0 for every layer)", negative.Trim());
    }

    [Fact]
    public void ReplayExpertsOutOfRangeIsAUsageError()
    {
        var npy = WriteInt32("ids.npy", "2, 1", [0, 1]);
        var (code, _, error) = Run("replay", npy, "--experts", "5000");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--experts 5000: give the number of experts, a whole number from 1 to 4,096. Run moegs replay --help for usage.", error.Trim());
    }

    /// <summary>A trace of ids holds no losses: the report says none were recorded rather than printing means of 0.</summary>
    [Fact]
    public void ATraceWithoutLossesReportsNoneRatherThanZeroMeans()
    {
        var npy = WriteInt32("noloss.npy", "2, 2", [0, 1, 2, 3]);
        var (code, output, error) = Run("replay", npy);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("Router losses: none recorded", output);
        Assert.DoesNotContain("0.0000", output);
    }

    [Fact]
    public void TheLargestIntIdWithoutExpertsIsExplainedNotWrapped()
    {
        var npy = WriteInt32("max.npy", "1, 2", [3, int.MaxValue]);
        var (code, _, error) = Run("replay", npy);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("the largest id is 2,147,483,647, which would make 2,147,483,648 experts", error);
        Assert.Contains("give --experts", error);
        Assert.DoesNotContain("-2147483648", error);
    }

    /// <summary>
    /// A file of one step, at most 128 rows of more than 16 ids, is more likely a load, [layers, experts], than top-k ids:
    /// replayed as ids, with a note that names plan (the reverse of plan's note on a trace); ids of a top-16 router, or
    /// more than 128 rows, get no note.
    /// </summary>
    [Theory]
    [InlineData(94, 128, true)]
    [InlineData(128, 17, true)]
    [InlineData(129, 17, false)]
    [InlineData(128, 16, false)]
    public void AnArrayShapedAsALoadIsReplayedWithANote(int rows, int columns, bool noted)
    {
        var values = Enumerable.Range(0, rows * columns).Select(i => (long)(i % 200));
        var load = NpyFile.Write(Path.Combine(_folder.FullName, "load.npy"), "<i8", $"{rows}, {columns}", [.. values.SelectMany(BitConverter.GetBytes)]);

        var (code, _, error) = Run("replay", load, "--experts", "256");

        Assert.True(code == ExitCodes.Ok, error);
        var note = $"note: {load} is read as {rows} token rows of {columns} ids each, more than a top-k router picks; if it holds a load, [layers, experts] (as --window-load writes), it is plan's input: moegs plan {load} --replicas R --gpus P.";
        Assert.Equal(noted, error.Contains(note, StringComparison.Ordinal));
        Assert.Equal(noted, error.Contains($"note: {load} is read as", StringComparison.Ordinal));
    }

    /// <summary>JSON lines of that shape get no such note: plan reads a load from a .npy or a JSON array, not from JSON lines.</summary>
    [Fact]
    public void JsonLinesShapedAsALoadGetNoNote()
    {
        var trace = Path.Combine(_folder.FullName, "wide.jsonl");
        File.WriteAllText(trace, $"{{\"topk_ids\": [[{string.Join(", ", Enumerable.Range(0, 20))}], [{string.Join(", ", Enumerable.Range(20, 20))}]]}}\n");

        var (code, _, error) = Run("replay", trace, "--experts", "64");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.DoesNotContain("is read as", error, StringComparison.Ordinal);
    }

    /// <summary>
    /// uint64 ids replay as their values; one past int32 is an invalid id; without --experts one past int64
    /// is named as it is, a usage error as the largest int64 id, whose expert count is printed without wrapping.
    /// </summary>
    [Fact]
    public void UnsignedIdsReplayAndTheLargestIsExplainedNotWrapped()
    {
        var ids = NpyFile.Write(Path.Combine(_folder.FullName, "u8.npy"), "<u8", "2, 2", [.. new ulong[] { 0, 1, 3, 1UL << 40 }.SelectMany(BitConverter.GetBytes)]);
        var (code, output, error) = Run("replay", ids, "--experts", "4", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        using (var report = JsonDocument.Parse(output))
        {
            Assert.Equal([1UL, 1, 0, 1], report.RootElement.GetProperty("expert_token_counts").EnumerateArray().Select(e => e.GetUInt64()));
            Assert.Equal(1UL, report.RootElement.GetProperty("invalid_expert_ids").GetUInt64());
        }

        var huge = NpyFile.Write(Path.Combine(_folder.FullName, "huge.npy"), "<u8", "1, 2", [.. new[] { 3UL, ulong.MaxValue }.SelectMany(BitConverter.GetBytes)]);
        (code, _, error) = Run("replay", huge);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal($"{huge}: id 18,446,744,073,709,551,615 is past any expert count, so the largest id does not say how many experts there are; give --experts (larger ids then count as invalid; -1 padding saved as uint64 reads as 18,446,744,073,709,551,615: save ids in a signed type).", error.TrimEnd());

        var largest = NpyFile.Write(Path.Combine(_folder.FullName, "largest.npy"), "<i8", "1, 2", [.. new[] { 3L, long.MaxValue }.SelectMany(BitConverter.GetBytes)]);
        (code, _, error) = Run("replay", largest);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Contains("the largest id is 9,223,372,036,854,775,807, which would make 9,223,372,036,854,775,808 experts", error);
    }

    /// <summary>
    /// -1 padding saved in an unsigned dtype becomes its largest value (255 in uint8): a replay that reads it says
    /// so, in the note on the inferred experts, in the refusal of too many, and in a warning after the steps, with
    /// or without --experts; a signed file's -1 and an unsigned file without its largest value bring none of it.
    /// </summary>
    [Fact]
    public void PaddingSavedUnsignedIsNamed()
    {
        const string Hint = "the largest uint8, which -1 padding becomes when saved as uint8";
        var u8 = NpyFile.Write(Path.Combine(_folder.FullName, "u8pad.npy"), "|u1", "3, 2", [0, 1, 2, 3, 255, 255]);
        var (code, _, error) = Run("replay", u8);
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"note: 256 experts, the largest id in u8pad.npy plus one; give --experts if the model has more (an expert no token reached is not in the file); 255 is {Hint}: if those ids are padding, save the ids in a signed type (int8 to int64).", error);
        Assert.Contains($"warning: 2 ids replayed are 255, {Hint}: if they are padding, save the ids in a signed type (int8 to int64); here they count as that expert's, or as invalid past --experts.", error);

        (code, var output, error) = Run("replay", u8, "--experts", "4", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"warning: 2 ids replayed are 255, {Hint}", error);
        using (var report = JsonDocument.Parse(output))
        {
            Assert.Equal(2UL, report.RootElement.GetProperty("invalid_expert_ids").GetUInt64());
        }

        var u16 = NpyFile.Write(Path.Combine(_folder.FullName, "u16pad.npy"), "<u2", "2, 2", [.. new ushort[] { 0, 1, 65_535, 65_535 }.SelectMany(BitConverter.GetBytes)]);
        (code, _, error) = Run("replay", u16);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal($"{u16}: the largest id is 65,535, which would make 65,536 experts; the engine holds 1 to 4,096: give --experts (larger ids then count as invalid); 65,535 is the largest uint16, which -1 padding becomes when saved as uint16: if those ids are padding, save the ids in a signed type (int8 to int64).", error.TrimEnd());

        var u64 = NpyFile.Write(Path.Combine(_folder.FullName, "u64pad.npy"), "<u8", "2, 2", [.. new ulong[] { 0, 1, ulong.MaxValue, ulong.MaxValue }.SelectMany(BitConverter.GetBytes)]);
        (code, _, error) = Run("replay", u64, "--experts", "4");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("warning: 2 ids replayed are 18,446,744,073,709,551,615, the largest uint64, which -1 padding becomes when saved as uint64", error);

        var signed = NpyFile.Write(Path.Combine(_folder.FullName, "i8pad.npy"), "|i1", "3, 2", [0, 1, 2, 3, 0xFF, 0xFF]);
        var unsigned = NpyFile.Write(Path.Combine(_folder.FullName, "u8.npy"), "|u1", "3, 2", [0, 1, 2, 3, 254, 7]);
        foreach (var file in new[] { signed, unsigned })
        {
            (code, _, error) = Run("replay", file);
            Assert.True(code == ExitCodes.Ok, error);
            Assert.DoesNotContain("padding becomes", error);
        }
    }

    /// <summary>
    /// A token padded with -1 saved as uint8 holds 255 k times: that is padding, not an expert named twice, so
    /// the warning about the layout stays away whether 255 was taken as an expert (no --experts) or is past
    /// them; an expert a token really names twice still brings it.
    /// </summary>
    [Fact]
    public void PaddingSavedUnsignedIsNoRepeatedExpert()
    {
        var padded = NpyFile.Write(Path.Combine(_folder.FullName, "u8steps.npy"), "|u1", "2, 2, 2", [0, 1, 255, 255, 2, 3, 255, 255]);
        foreach (var experts in new[] { Array.Empty<string>(), ["--experts", "4"] })
        {
            var (code, _, error) = Run([.. new[] { "replay", padded, "--layout", "steps,tokens,k" }, .. experts]);
            Assert.True(code == ExitCodes.Ok, error);
            Assert.Contains("warning: 4 ids replayed are 255", error);
            Assert.DoesNotContain("twice", error);
        }

        var repeated = NpyFile.Write(Path.Combine(_folder.FullName, "u8twice.npy"), "|u1", "2, 2, 2", [0, 0, 255, 255, 2, 3, 255, 255]);
        var (_, _, twice) = Run("replay", repeated, "--layout", "steps,tokens,k");
        Assert.Contains("warning: 1 token (the first in step 0) names one expert twice among its 2 ids", twice);
    }

    [Fact]
    public void ReplayPassesPaddingThroughAndInfersExpertsWithoutIt()
    {
        int[] ids = [-1, 2, 1, -1, 2, 0, -1, -1];
        var npy = WriteInt32("pad.npy", "2, 2, 2", ids);
        var saved = Path.Combine(_folder.FullName, "pad.json");

        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--save", saved);

        Assert.True(code == ExitCodes.Ok, error);
        using var stats = RoutingStatsFile.Load(saved);
        Assert.Equal([1UL, 1UL, 2UL], stats.ExpertTokenCounts);
        Assert.Equal(2UL, stats.TotalRoutings);

        // An expert no token reached leaves no id: the count inferred is said, and --experts silences it.
        Assert.Contains("note: 3 experts, the largest id in pad.npy plus one; give --experts if the model has more", error);
        var (given, _, quiet) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "3");
        Assert.Equal(ExitCodes.Ok, given);
        Assert.DoesNotContain("note:", quiet);
    }

    /// <summary>A step of padding alone (an idle rank's dummy pass) counts as a batch with no load, lowering the mean shares: replay says so.</summary>
    [Fact]
    public void StepsOfPaddingAloneAreNamedWithWhatTheyDoToTheShares()
    {
        int[] ids = [0, 1, 2, 3, 0, 2, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1];
        var npy = WriteInt32("idle.npy", "3, 3, 2", ids);
        var saved = Path.Combine(_folder.FullName, "idle.json");

        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "4", "--save", saved);

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: 2 steps held padding alone (-1), no token (the first is step 1): each counts as a batch with no load, which lowers every expert's mean share of a batch, so the shares add up to less than k x 100 % (the load and its balance are unaffected).", error);
        using var stats = RoutingStatsFile.Load(saved);
        Assert.Equal(3UL, stats.TotalRoutings);
        Assert.Equal((2f / 3f) / 3f, stats.ExpertUtilization[0], 6);
    }

    [Fact]
    public void TokensThatNameAnExpertTwiceAreWarnedAbout()
    {
        int[] ids = [0, 0, 1, 2, 3, 3, 2, 1, -1, -1];
        var npy = WriteInt32("twice.npy", "5, 2", ids);
        var (code, _, error) = Run("replay", npy);
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: 2 tokens (the first in step 0) name one expert twice among their 2 ids", error);

        // Over steps, the warning names the first step with such a token, not the last.
        int[] steps = [0, 1, 2, 3, 1, 1, 0, 2, 3, 0, 2, 2];
        npy = WriteInt32("twice-steps.npy", "3, 2, 2", steps);
        (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "4");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("warning: 2 tokens (the first in step 1) name one expert twice among their 2 ids", error);
    }

    /// <summary>More ids per token than experts, which no top-k router writes, are warned about whether E is inferred or given; k = E is not.</summary>
    [Theory]
    [InlineData(null, "4, 2", "warning: each token holds 2 ids and there is 1 expert: a top-k router picks k different experts, so k is at most E; is --experts right, and is the file's last axis k (--layout)?")]
    [InlineData("3", "2, 4", "warning: each token holds 4 ids and there are 3 experts")]
    [InlineData("2", "4, 2", null)]
    public void MoreIdsPerTokenThanExpertsAreWarnedAbout(string? experts, string shape, string? warning)
    {
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "k.npy"), "<i4", shape, new byte[8 * sizeof(int)]);
        var (code, _, error) = experts is null ? Run("replay", npy) : Run("replay", npy, "--experts", experts);

        Assert.True(code == ExitCodes.Ok, error);
        if (warning is null)
        {
            Assert.DoesNotContain("ids and there", error);
        }
        else
        {
            Assert.Contains(warning, error);
        }
    }

    /// <summary>A JSON-lines trace has no axes to give: the warning asks whether each token's topk_ids holds its own k experts.</summary>
    [Fact]
    public void MoreIdsPerTokenThanExpertsInJsonLinesAskAboutEachTokensIds()
    {
        var jsonl = Path.Combine(_folder.FullName, "k.jsonl");
        File.WriteAllLines(jsonl, ["{\"topk_ids\": [0, 0]}", "{\"topk_ids\": [0, 0]}"]);

        var (code, _, error) = Run("replay", jsonl);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("warning: each token holds 2 ids and there is 1 expert: a top-k router picks k different experts, so k is at most E; is --experts right, and does each token's topk_ids hold its own k experts?", error);
    }

    /// <summary>
    /// Without --experts the experts are the largest id plus one, 1 to 4,096: a file of no id at 0 or more (padding
    /// alone, or invalid ids) says nothing of them, and a largest id of 4,096 makes one expert too many.
    /// </summary>
    [Theory]
    [InlineData(new[] { -1, -1, -1, -1 }, null)]
    [InlineData(new[] { -3, -1, -2, -1 }, null)]
    [InlineData(new[] { 0, 4_096, 1, 2 }, "the largest id is 4,096, which would make 4,097 experts; the engine holds 1 to 4,096: give --experts (larger ids then count as invalid).")]
    public void ExpertsTheIdsCannotGiveAreAUsageError(int[] ids, string? expected)
    {
        var npy = WriteInt32("bounds.npy", "2, 2", ids);

        var (code, output, error) = Run("replay", npy);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Equal($"{npy}: {expected ?? "no id is 0 or more, so the file does not say how many experts there are; give --experts (1 to 4,096)."}", error.TrimEnd());
    }

    /// <summary>The largest id the engine's experts hold, 4,095, makes 4,096 experts.</summary>
    [Fact]
    public void ALargestIdOfTheMostExpertsLessOneIsTaken()
    {
        var npy = WriteInt32("most.npy", "2, 2", [0, 4_095, 1, 2]);

        var (code, _, error) = Run("replay", npy);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("note: 4,096 experts, the largest id in most.npy plus one", error);
    }

    /// <summary>
    /// Only an expert (an id in [0, E)) named twice by one token counts as repeated: padding (-1), other negative ids
    /// and ids at or past E repeat without it, and tokens that share experts with the token before them repeat nothing.
    /// </summary>
    [Fact]
    public void OnlyAnExpertNamedTwiceByOneTokenCountsAsRepeated()
    {
        int[] ids =
        [
            5, 5, 0, 1, -1, -1, 2, 3, 0, 1, 2, 3, 3, 2, 1, 0,
            -7, -7, 4, 4, 1, -1, 1, 2, 2, 3, 2, -1, 0, 1, 2, 3,
        ];
        var npy = WriteInt32("repeats.npy", "2, 4, 4", ids);

        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "4");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("warning: 2 tokens (the first in step 1) name one expert twice among their 4 ids, which a top-k router never does: is the file shaped [steps,tokens,k] (--layout)?", error);
    }

    /// <summary>
    /// A pipe where replay reads a file by position is one line asking for a file, not an unexpected
    /// error, and is refused before it is opened: opening a pipe without a writer would wait for one.
    /// </summary>
    [Fact]
    public async Task APipeIsOneLineAskingForAFile()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "needs mkfifo");
        var fifo = Path.Combine(_folder.FullName, "ids.pipe");
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo]))
        {
            await mkfifo.WaitForExitAsync(TestContext.Current.CancellationToken);
        }

        var (code, output, error) = await Task.Run(() => Run("replay", fifo, "--experts", "2"), TestContext.Current.CancellationToken)
            .WaitAsync(Patience.GoAhead, TestContext.Current.CancellationToken);

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{fifo}: is a pipe or a device; give a .npy, .npz, .jsonl or .ndjson file.", error.Trim());
    }

    /// <summary>After a replay with --serve-after the endpoint still answers, with the final totals, until Ctrl-C.</summary>
    [Fact]
    public async Task TheEndpointServesTheFinalStateAfterTheRun()
    {
        int[] ids = [0, 1, 2, 3, 1, 2, 3, 0, 2, 3];
        var npy = WriteInt32("serve.npy", "5, 1, 2", ids);
        var port = PrometheusText.FreePort();
        using var moegs = StartSignallable("replay", npy, "--layout", "steps,tokens,k", "--experts", "4", "--metrics-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--serve-after");
        using var cleanup = new ProcessCleanup(moegs);
        var output = moegs.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var cancel = TestContext.Current.CancellationToken;
        await UntilServingTheFinalState(moegs);
        using var http = new HttpClient();
        var (types, samples) = PrometheusText.Parse(await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"), cancel));
        Assert.Equal(5, samples["moegpustats_moegs_routings_total"]);
        Assert.Equal("counter", types["moegpustats_moegs_routings_total"]);
        await Interrupt(moegs);

        await moegs.WaitForExitAsync(cancel).WaitAsync(Patience.GoAhead, cancel);
        Assert.Equal(ExitCodes.Ok, moegs.ExitCode);
        Assert.Contains("Batches and tokens", await output);
    }

    /// <summary>A whole model's replay with --serve-after serves its bounded series with the final state, and the balance over its newest steps with --metrics-recent-steps: a scraper parses them.</summary>
    [Fact]
    public async Task AModelsEndpointServesItsFinalBalanceAfterTheRun()
    {
        const int steps = 4, layers = 3, tokens = 5, topK = 2, experts = 6;
        var ids = Enumerable.Range(0, steps * layers * tokens * topK).Select(i => (i * 7 / 3) % experts).ToArray();
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "model.npy"), "<i4", $"{steps}, {layers}, {tokens}, {topK}", [.. ids.SelectMany(BitConverter.GetBytes)]);
        using var expected = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = layers, Experts = experts });
        for (var step = 0; step < steps; step++)
        {
            expected.RecordStep(ids.AsSpan(step * layers * tokens * topK, layers * tokens * topK), tokens, topK);
        }

        var summary = expected.Summary();
        var recent = expected.Summary(2);
        var port = PrometheusText.FreePort();
        using var moegs = StartSignallable(
            "replay", npy, "--experts", $"{experts}", "--metrics-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--metrics-top-experts", "2", "--metrics-recent-steps", "2", "--serve-after");
        using var cleanup = new ProcessCleanup(moegs);
        var output = moegs.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
        var cancel = TestContext.Current.CancellationToken;
        await UntilServingTheFinalState(moegs);
        using var http = new HttpClient();
        var (types, samples) = PrometheusText.Parse(await http.GetStringAsync(new Uri($"http://127.0.0.1:{port}/metrics"), cancel));
        Assert.Equal(steps, samples["moegpustats_moegs_model_steps_total"]);
        Assert.Equal("counter", types["moegpustats_moegs_model_steps_total"]);
        Assert.Equal("gauge", types["moegpustats_moegs_layer_balancedness"]);
        Assert.Equal(summary.Window.MeanBalancedness, samples["moegpustats_moegs_model_balancedness_mean"], 12);
        for (var l = 0; l < layers; l++)
        {
            Assert.Equal(summary.Window.Layers[l].Balancedness, samples[$"moegpustats_moegs_layer_balancedness{{layer=\"{l}\"}}"], 12);
            Assert.Equal(summary.Window.Layers[l].HottestExpert, samples[$"moegpustats_moegs_layer_hot_expert{{layer=\"{l}\",position=\"1\"}}"]);
            Assert.Equal(recent.Window.Layers[l].Balancedness, samples[$"moegpustats_moegs_layer_recent_balancedness{{layer=\"{l}\"}}"], 12);
        }

        Assert.Equal(2, samples["moegpustats_moegs_model_recent_steps"]);
        Assert.Equal(recent.Window.MinBalancedness, samples["moegpustats_moegs_model_recent_balancedness_min"], 12);
        Assert.Equal(11 + (12 * layers) + (4 * layers * 2) + 4 + layers, samples.Count);
        await Interrupt(moegs);

        await moegs.WaitForExitAsync(cancel).WaitAsync(Patience.GoAhead, cancel);
        Assert.Equal(ExitCodes.Ok, moegs.ExitCode);
        var report = await output;
        Assert.Contains("Layers, worst first", report);
        Assert.Contains("reading the file is not timed, nor the first step", report);
    }

    [Theory]
    [InlineData("not a header at all", "not a NumPy .npy file")]
    [InlineData("-1, 2", "dimension -1 is negative")]
    [InlineData("2147483647, 2147483647, 1", "claims more ids than any file holds")]
    [InlineData("1000000, 1000, 2", "truncated: shape (1000000, 1000, 2) needs 8,000,000,128 bytes, the file has 136")]
    [InlineData("version 2", "truncated: the header claims 4,294,967,280 bytes")]
    public void AMalformedFileIsOneLineAndExitCodeOne(string kind, string expected)
    {
        var path = Path.Combine(_folder.FullName, "bad.npy");
        if (kind == "version 2")
        {
            File.WriteAllBytes(path, [0x93, .. "NUMPY"u8, 2, 0, 0xF0, 0xFF, 0xFF, 0xFF]);
        }
        else if (kind.Contains(',', StringComparison.Ordinal))
        {
            NpyFile.Write(path, "<i4", kind, new byte[8]);
        }
        else
        {
            File.WriteAllText(path, kind);
        }

        var (code, output, error) = Run("replay", path);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{path}: ", error[..(path.Length + 2)]);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    /// <summary>A replay's picture is a PNG of the expected size with the heat map drawn; so is a single step's, and a snapshot's.</summary>
    [Theory]
    [InlineData(Steps)]
    [InlineData(1)]
    public void ThePlotOfAModelIsAPng(int steps)
    {
        var npy = WriteInt32("model.npy", $"{steps}, {Layers}, {Tokens}, {TopK}", Ids(steps, Layers, Tokens, seed: 4));
        var png = Path.ChangeExtension(npy, ".png");
        var saved = Path.ChangeExtension(npy, ".json");

        var (code, _, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--plot", png, "--save", saved);

        Assert.True(code == ExitCodes.Ok, error);
        AssertPicture(png);
        var again = Path.ChangeExtension(npy, ".report.png");
        Assert.Equal(ExitCodes.Ok, Moegs.Run("report", saved, "--plot", again).Code);
        AssertPicture(again);
    }

    /// <summary>
    /// A replay that leaves steps out (--skip-steps) draws the steps it recorded as a replay of those steps alone does,
    /// but its balance panel's title says from which of the trace's steps they count (ModelLoadPlotTests): the two
    /// pictures differ, where the same replay drawn twice is the same picture.
    /// </summary>
    [Fact]
    public void ThePlotOfAReplayThatSkipsStepsSaysSo()
    {
        const int Skipped = 2;
        var ids = Ids(Steps, Layers, Tokens, seed: 4);
        var whole = WriteInt32("whole.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids);
        var rest = WriteInt32("rest.npy", $"{Steps - Skipped}, {Layers}, {Tokens}, {TopK}", ids[(Skipped * Layers * Tokens * TopK)..]);
        byte[] Plot(string npy, string name, params string[] more)
        {
            var png = Path.Combine(_folder.FullName, name);
            var (code, _, error) = Moegs.Run(["replay", npy, "--experts", $"{Experts}", "--plot", png, .. more]);
            Assert.True(code == ExitCodes.Ok, error);
            return File.ReadAllBytes(png);
        }

        var skipping = Plot(whole, "skipping.png", "--skip-steps", $"{Skipped}");
        var alone = Plot(rest, "alone.png");

        Assert.Equal(alone, Plot(rest, "again.png"));
        Assert.NotEqual(alone, skipping);
    }

    private static void AssertPicture(string path)
    {
        using var bitmap = SKBitmap.Decode(path);
        Assert.NotNull(bitmap);
        Assert.Equal((ModelLoadPlot.Width, ModelLoadPlot.Height), (bitmap.Width, bitmap.Height));
        var colors = Enumerable.Range(0, 200).Select(i => bitmap.GetPixel(i * 37 % bitmap.Width, i * 23 % bitmap.Height)).Distinct().Count();
        Assert.True(colors > 5, $"{colors} colors: the picture should hold a heat map");
    }

    /// <summary>Layer <paramref name="layer"/>'s ids of every step, [steps, tokens, k].</summary>
    private static int[] LayerSlice(int[] ids, int layer)
    {
        var perLayer = Tokens * TopK;
        return [.. Enumerable.Range(0, Steps).SelectMany(step => ids.AsSpan(((step * Layers) + layer) * perLayer, perLayer).ToArray())];
    }

    /// <summary>[steps, layers, tokens, k] ids stored as [steps, tokens, layers, k].</summary>
    private static int[] TokensFirst(int[] ids, int steps)
    {
        var reordered = new int[ids.Length];
        for (var step = 0; step < steps; step++)
        {
            for (var layer = 0; layer < Layers; layer++)
            {
                for (var token = 0; token < Tokens; token++)
                {
                    ids.AsSpan(((((step * Layers) + layer) * Tokens) + token) * TopK, TopK)
                        .CopyTo(reordered.AsSpan(((((step * Tokens) + token) * Layers) + layer) * TopK));
                }
            }
        }

        return reordered;
    }

    internal string WriteInt32(string name, string shape, int[] ids) =>
        NpyFile.Write(Path.Combine(_folder.FullName, name), "<i4", shape, [.. ids.SelectMany(BitConverter.GetBytes)]);
}
