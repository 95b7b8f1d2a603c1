using System.Text.Json;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Cli;

/// <summary><c>moegs replay --layout</c>: files with a layers axis replayed as a whole model, and the window load for <c>plan</c>.</summary>
public sealed class ReplayLayersTests : IDisposable
{
    private const int Steps = 5;
    private const int Layers = 3;
    private const int Tokens = 6;
    private const int TopK = 2;
    private const int Experts = 8;

    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-layers-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>Each layer of a 4-D replay reports what one layer's own replay and a one-layer model report.</summary>
    [Fact]
    public void EachLayerOfAFourDimensionalReplayEqualsThatLayerReplayedAlone()
    {
        var ids = Ids(Steps, Layers, Tokens, seed: 3);
        var npy = WriteInt32("model.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids);

        var (code, output, error) = CommandLineTests.Run("replay", npy, "--experts", $"{Experts}", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        using var report = JsonDocument.Parse(output);
        Assert.Equal(Steps, report.RootElement.GetProperty("steps").GetInt32());
        var perLayer = report.RootElement.GetProperty("since_start").GetProperty("per_layer").EnumerateArray().ToArray();
        Assert.Equal(Layers, perLayer.Length);
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

            // And the single-layer path of replay agrees: the same slice as a [steps, tokens, k] file.
            var saved = Path.Combine(_folder.FullName, $"layer{layer}.json");
            var sliceFile = WriteInt32($"layer{layer}.npy", $"{Steps}, {Tokens}, {TopK}", slice);
            var (sliceCode, _, sliceError) = CommandLineTests.Run("replay", sliceFile, "--layout", "steps,tokens,k", "--experts", $"{Experts}", "--save", saved);
            Assert.True(sliceCode == ExitCodes.Ok, sliceError);
            using var single = RoutingStatsFile.Load(saved);
            var counts = single.ExpertTokenCounts;
            Assert.Equal(expected.Load, counts.Aggregate(0UL, (sum, count) => sum + count));
            Assert.Equal(expected.HottestExpert, counts.ToList().IndexOf(counts.Max()));
            Assert.Equal(expected.DeadExperts, counts.Count(count => count == 0));
        }

        var window = report.RootElement.GetProperty("window");
        Assert.Equal(
            perLayer.Select(layer => layer.GetProperty("balancedness").GetDouble()).Min(),
            window.GetProperty("min_balancedness").GetDouble());
    }

    /// <summary>[steps, tokens, layers, k] is reordered as it is read: the report equals that of the same ids stored layers first.</summary>
    [Fact]
    public void TokensFirstFilesReportAsTheSameIdsStoredLayersFirst()
    {
        var ids = Ids(Steps, Layers, Tokens, seed: 5);
        var layersFirst = WriteInt32("lf.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids);
        var tokensFirst = WriteInt32("tf.npy", $"{Steps}, {Tokens}, {Layers}, {TopK}", TokensFirst(ids, Steps));

        var (code, expected, error) = CommandLineTests.Run("replay", layersFirst, "--experts", $"{Experts}", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        var (tokensCode, got, tokensError) = CommandLineTests.Run("replay", tokensFirst, "--layout", "steps,tokens,layers,k", "--experts", $"{Experts}", "--json");
        Assert.True(tokensCode == ExitCodes.Ok, tokensError);
        Assert.Equal(expected, got);

        // One step, 3-D: [tokens, layers, k] against [layers, tokens, k].
        var first = ids[..(Layers * Tokens * TopK)];
        var (oneCode, one, _) = CommandLineTests.Run("replay", WriteInt32("one.npy", $"{Layers}, {Tokens}, {TopK}", first), "--layout", "layers,tokens,k", "--experts", $"{Experts}", "--json");
        var (otherCode, other, _) = CommandLineTests.Run("replay", WriteInt32("other.npy", $"{Tokens}, {Layers}, {TopK}", TokensFirst(first, 1)), "--layout", "tokens,layers,k", "--experts", $"{Experts}", "--json");
        Assert.Equal((ExitCodes.Ok, ExitCodes.Ok), (oneCode, otherCode));
        Assert.Equal(one, other);
    }

    /// <summary>A step larger than the reader's 1 MiB chunk: rows that straddle chunks land in their places.</summary>
    [Fact]
    public void TheReorderIsExactAcrossReadChunks()
    {
        const int tokens = 40_000, layers = 3, topK = 3;
        var ids = Enumerable.Range(0, tokens * layers * topK).ToArray();
        var path = WriteInt32("big.npy", $"{tokens}, {layers}, {topK}", ids);
        using var npy = NpyIds.Open(path, IdLayout.TokensLayersK);
        Assert.Equal((1, layers, tokens, topK), (npy.Steps, npy.Layers, npy.Tokens, npy.TopK));
        var step = new int[npy.IdsPerStep];
        npy.ReadStep(0, step);
        for (var layer = 0; layer < layers; layer++)
        {
            for (var token = 0; token < tokens; token++)
            {
                for (var slot = 0; slot < topK; slot++)
                {
                    Assert.Equal((((token * layers) + layer) * topK) + slot, step[(((layer * tokens) + token) * topK) + slot]);
                }
            }
        }
    }

    [Fact]
    public void AThreeDimensionalFileWithoutLayoutAsksForOneInsteadOfGuessing()
    {
        var npy = WriteInt32("three.npy", $"{Steps}, {Tokens}, {TopK}", Ids(Steps, 1, Tokens, seed: 1));
        var (code, output, error) = CommandLineTests.Run("replay", npy);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Equal($"{npy}: shape (5, 6, 2) could be [steps, tokens, k], [layers, tokens, k] or [tokens, layers, k]; give --layout steps,tokens,k, layers,tokens,k or tokens,layers,k.", error.Trim());
    }

    [Fact]
    public void AnUnknownLayoutIsOneLineListingTheLayouts()
    {
        var npy = WriteInt32("two.npy", $"{Tokens}, {TopK}", Ids(1, 1, Tokens, seed: 1));
        var (code, output, error) = CommandLineTests.Run("replay", npy, "--layout", "tokens,steps,k");

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.StartsWith("--layout tokens,steps,k: give one of steps,layers,tokens,k; steps,tokens,layers,k; layers,tokens,k; tokens,layers,k; steps,tokens,k; tokens,k.", error);
    }

    [Theory]
    [InlineData("steps,layers,tokens,k", "give tokens,k.")]
    [InlineData("layers,tokens,k", "give tokens,k.")]
    public void ALayoutOfAnotherRankThanTheFileIsAUsageError(string layout, string advice)
    {
        var npy = WriteInt32("two.npy", $"{Tokens}, {TopK}", Ids(1, 1, Tokens, seed: 1));
        var (code, output, error) = CommandLineTests.Run("replay", npy, "--layout", layout);

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

        var (code, _, error) = CommandLineTests.Run("replay", npy, "--experts", $"{Experts}", "--window", "2", "--window-load", load);

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
        var (planCode, plan, planError) = CommandLineTests.Run("plan", load, "--replicas", "8", "--gpus", "2", "--json");
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
        var (code, output, error) = CommandLineTests.Run("replay", npy, "--window-load", given);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.StartsWith($"--window-load {given}: ", error);
        Assert.Contains(expected, error);
        Assert.Equal([npy], Directory.GetFiles(_folder.FullName, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public void ModelOptionsAreRefusedWithoutLayersOrWithoutAnEndpoint()
    {
        var model = WriteInt32("model.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", Ids(Steps, Layers, Tokens, seed: 7));
        var (code, _, error) = CommandLineTests.Run("replay", model, "--metrics-top-experts", "3");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--metrics-top-experts: shapes the metrics of --metrics-port, which was not given.", error.Trim());

        var layer = WriteInt32("layer.npy", $"{Tokens}, {TopK}", Ids(1, 1, Tokens, seed: 7));
        (code, _, error) = CommandLineTests.Run("replay", layer, "--window-load", Path.Combine(_folder.FullName, "w.npy"));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith("--window-load: the window load is a model's", error);

        (code, _, error) = CommandLineTests.Run("replay", layer, "--metrics-port", "1", "--metrics-expert-series");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith("--metrics-expert-series: shapes a whole model's metrics", error);
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

        var (code, output, error) = CommandLineTests.Run("replay", npy, "--experts", $"{experts}", "--capacity", "2", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"warning: {invalid:N0} ids (", error);
        Assert.Contains("is --experts right?", error);
        using var report = JsonDocument.Parse(output);
        Assert.Equal(invalid, report.RootElement.GetProperty("invalid_expert_ids").GetInt32());
        Assert.Equal(routed, report.RootElement.GetProperty("routed_slots").GetInt32());
        Assert.Equal(dropped, report.RootElement.GetProperty("slots_dropped").GetUInt64());
        Assert.True(dropped > 0, "the test's capacity should drop slots");

        var (_, text, _) = CommandLineTests.Run("replay", npy, "--experts", $"{experts}", "--capacity", "2");
        var line = text.Split('\n').Single(l => l.StartsWith("  invalid expert ids", StringComparison.Ordinal));
        Assert.Contains($" {invalid:N0} ", line);
        Assert.Contains(text.Split('\n'), l => l.StartsWith("  slots dropped", StringComparison.Ordinal) && l.Contains($" {dropped:N0} ", StringComparison.Ordinal));
    }

    /// <summary>The text report lists the worst layers first, at most ten, and says how many it leaves out.</summary>
    [Fact]
    public void TheReportListsTheWorstLayersFirst()
    {
        const int layers = 12;
        var ids = Ids(Steps, layers, Tokens, seed: 11);
        var npy = WriteInt32("twelve.npy", $"{Steps}, {layers}, {Tokens}, {TopK}", ids);
        var (jsonCode, json, _) = CommandLineTests.Run("replay", npy, "--experts", $"{Experts}", "--json");
        Assert.Equal(ExitCodes.Ok, jsonCode);
        using var report = JsonDocument.Parse(json);
        var worstFirst = report.RootElement.GetProperty("since_start").GetProperty("per_layer").EnumerateArray()
            .Select(layer => (Layer: layer.GetProperty("layer").GetInt32(), Balancedness: layer.GetProperty("balancedness").GetDouble()))
            .OrderBy(layer => layer.Balancedness).Select(layer => layer.Layer).Take(10).ToArray();

        var (code, output, error) = CommandLineTests.Run("replay", npy, "--experts", $"{Experts}");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("in 12 layers (steps,layers,tokens,k)", output);
        Assert.Contains("over all 5 steps (the window holds them all)", output);
        var rows = output.Split('\n').SkipWhile(line => !line.StartsWith("  layer  balancedness", StringComparison.Ordinal)).Skip(1).Take(11).ToArray();
        Assert.Equal(worstFirst, rows[..10].Select(row => int.Parse(row.Split(' ', StringSplitOptions.RemoveEmptyEntries)[0], System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Contains("2 more layers, better balanced", rows[10]);
    }

    /// <summary>Top-k ids without repeats per token, [steps, layers, tokens, k], skewed so layers differ; a few empty slots.</summary>
    internal static int[] Ids(int steps, int layers, int tokens, int seed)
    {
        var random = new Random(seed);
        var ids = new int[steps * layers * tokens * TopK];
        for (var row = 0; row < steps * layers * tokens; row++)
        {
            var layer = row / tokens % layers;
            var first = Math.Min(Experts - 1, (int)(random.NextDouble() * random.NextDouble() * (Experts - (layer % (Experts - 1)))));
            ids[row * TopK] = first;
            ids[(row * TopK) + 1] = random.Next(10) == 0 ? -1 : (first + 1 + random.Next(Experts - 1)) % Experts;
        }

        return ids;
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
        NpyIdsTests.Write(Path.Combine(_folder.FullName, name), "<i4", shape, [.. ids.SelectMany(BitConverter.GetBytes)]);
}
