using System.Text.Json;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using SkiaSharp;

namespace MoeGpuStats.Tests.Cli;

/// <summary>What a replay of a whole model writes beside its report: the snapshot, the picture, the metrics.</summary>
public sealed class ModelOutputTests : IDisposable
{
    private const int Steps = 5;
    private const int Layers = 3;
    private const int Tokens = 6;
    private const int TopK = 2;
    private const int Experts = 8;

    private readonly ReplayLayersTests _files = new();

    public void Dispose() => _files.Dispose();

    /// <summary>
    /// Two ranks' replays saved as model snapshots merge to the counts of both, which report and plan
    /// read back; a snapshot of one layer does not merge with a model's.
    /// </summary>
    [Fact]
    public void ModelSnapshotsSaveMergeReportAndPlan()
    {
        var rank0 = _files.WriteInt32("rank0.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ReplayLayersTests.Ids(Steps, Layers, Tokens, seed: 1));
        var rank1 = _files.WriteInt32("rank1.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ReplayLayersTests.Ids(Steps, Layers, Tokens, seed: 2));
        var saved = new[] { rank0, rank1 }.Select(npy => Path.ChangeExtension(npy, ".json")).ToArray();
        for (var rank = 0; rank < 2; rank++)
        {
            var (code, _, error) = CommandLineTests.Run("replay", rank == 0 ? rank0 : rank1, "--experts", $"{Experts}", "--window", "3", "--save", saved[rank]);
            Assert.True(code == ExitCodes.Ok, error);
            Assert.Contains($"snapshot: {saved[rank]}", error);
        }

        var merged = Path.Combine(Path.GetDirectoryName(rank0)!, "merged.json");
        var (mergeCode, mergeOut, mergeError) = CommandLineTests.Run("merge", saved[0], saved[1], "-o", merged, "--json");
        Assert.True(mergeCode == ExitCodes.Ok, mergeError);

        using var parts = new DisposableList(saved.Select(path => SnapshotFile.Load(path).Model!));
        using var whole = SnapshotFile.Load(merged);
        Assert.NotNull(whole.Model);
        for (var l = 0; l < Layers; l++)
        {
            using var a = parts[0].Layer(l);
            using var b = parts[1].Layer(l);
            using var m = whole.Model!.Layer(l);
            Assert.Equal(a.ExpertTokenCounts.Zip(b.ExpertTokenCounts, (x, y) => x + y), m.ExpertTokenCounts);
        }

        var windows = parts.Select(p => p.WindowLoad()).ToArray();
        Assert.Equal(windows[0].Zip(windows[1], (x, y) => x + y), whole.Model!.WindowLoad());

        // The merge's JSON report and the saved merge's report agree, and plan reads the window load.
        var (reportCode, reportOut, reportError) = CommandLineTests.Run("report", merged, "--json");
        Assert.True(reportCode == ExitCodes.Ok, reportError);
        Assert.Equal(mergeOut, reportOut);
        using (var report = JsonDocument.Parse(reportOut))
        {
            Assert.Equal(2 * Steps, report.RootElement.GetProperty("steps").GetInt32());
        }

        var (textCode, text, _) = CommandLineTests.Run("report", merged);
        Assert.Equal(ExitCodes.Ok, textCode);
        Assert.StartsWith($"report {merged}: a model of {Layers} layers of {Experts} experts", text);
        Assert.Equal(ToMatrix(whole.Model!.WindowLoad()), LoadMatrix.Read(merged));

        var single = _files.WriteInt32("layer.npy", $"{Tokens}, {TopK}", ReplayLayersTests.Ids(1, 1, Tokens, seed: 3));
        var singleSaved = Path.ChangeExtension(single, ".json");
        Assert.Equal(ExitCodes.Ok, CommandLineTests.Run("replay", single, "--experts", $"{Experts}", "--save", singleSaved).Code);
        var (kindCode, _, kindError) = CommandLineTests.Run("merge", saved[0], singleSaved, "-o", Path.Combine(Path.GetDirectoryName(rank0)!, "mixed.json"));
        Assert.Equal(ExitCodes.BadInput, kindCode);
        Assert.Equal($"{saved[0]} holds a model of {Layers} layers of {Experts} experts, {singleSaved} holds one layer of {Experts} experts; merge layers with layers and models with models.", kindError.Trim());
    }

    /// <summary>Models of different shapes are refused in one line naming the files.</summary>
    [Fact]
    public void ModelSnapshotsOfDifferentShapesDoNotMerge()
    {
        var three = _files.WriteInt32("three.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ReplayLayersTests.Ids(Steps, Layers, Tokens, seed: 1));
        var two = _files.WriteInt32("two.npy", $"{Steps}, 2, {Tokens}, {TopK}", ReplayLayersTests.Ids(Steps, 2, Tokens, seed: 1));
        foreach (var npy in new[] { three, two })
        {
            Assert.Equal(ExitCodes.Ok, CommandLineTests.Run("replay", npy, "--experts", $"{Experts}", "--save", Path.ChangeExtension(npy, ".json")).Code);
        }

        var (code, _, error) = CommandLineTests.Run("merge", Path.ChangeExtension(three, ".json"), Path.ChangeExtension(two, ".json"), "-o", Path.ChangeExtension(three, ".m.json"));

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.StartsWith($"cannot merge {Path.ChangeExtension(three, ".json")}, {Path.ChangeExtension(two, ".json")}: ", error);
        Assert.Single(error.Trim().Split('\n'));
    }

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

    /// <summary>A replay's picture is a PNG of the expected size with the heat map drawn; so is a single step's, and a snapshot's.</summary>
    [Theory]
    [InlineData(Steps)]
    [InlineData(1)]
    public void ThePlotOfAModelIsAPng(int steps)
    {
        var npy = _files.WriteInt32("model.npy", $"{steps}, {Layers}, {Tokens}, {TopK}", ReplayLayersTests.Ids(steps, Layers, Tokens, seed: 4));
        var png = Path.ChangeExtension(npy, ".png");
        var saved = Path.ChangeExtension(npy, ".json");

        var (code, _, error) = CommandLineTests.Run("replay", npy, "--experts", $"{Experts}", "--plot", png, "--save", saved);

        Assert.True(code == ExitCodes.Ok, error);
        AssertPicture(png);
        var again = Path.ChangeExtension(npy, ".report.png");
        Assert.Equal(ExitCodes.Ok, CommandLineTests.Run("report", saved, "--plot", again).Code);
        AssertPicture(again);
    }

    /// <summary>The endpoint serves a model's bounded series, parsed here as Prometheus reads them.</summary>
    [Fact]
    public async Task PrometheusScrapesAModelsBoundedSeries()
    {
        using var stats = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts });
        var ids = ReplayLayersTests.Ids(1, Layers, Tokens, seed: 6);
        stats.RecordStep(ids, Tokens, TopK);
        var port = Telemetry.MetricsEndpointTests.FreePort();
        using var endpoint = MetricsEndpoint.Start(stats, "localhost", port, topExperts: 2, expertSeries: false);
        using var http = new HttpClient();

        var text = await http.GetStringAsync($"http://localhost:{port}/metrics", TestContext.Current.CancellationToken);

        var (_, samples) = Telemetry.MetricsEndpointTests.Parse(text);
        var summary = stats.Summary();
        Assert.Equal(1, samples["moegpustats_moegs_model_steps_total"]);
        Assert.Equal(summary.Window.MinBalancedness, samples["moegpustats_moegs_model_balancedness_min"], 12);
        for (var l = 0; l < Layers; l++)
        {
            Assert.Equal(summary.Window.Layers[l].Balancedness, samples[$"moegpustats_moegs_layer_balancedness{{layer=\"{l}\"}}"], 12);
            Assert.Equal(summary.Window.Layers[l].HottestExpert, samples[$"moegpustats_moegs_layer_hot_expert{{layer=\"{l}\",position=\"1\"}}"]);
            Assert.Equal(summary.Window.Layers[l].Load, (ulong)samples[$"moegpustats_moegs_layer_slots_total{{layer=\"{l}\"}}"]);
        }

        Assert.Equal(6 + (5 * Layers) + (4 * Layers * 2), samples.Count);
        Assert.DoesNotContain(samples.Keys, key => key.Contains("expert=", StringComparison.Ordinal));
    }

    private static void AssertPicture(string path)
    {
        using var bitmap = SKBitmap.Decode(path);
        Assert.NotNull(bitmap);
        Assert.Equal((ModelLoadPlot.Width, ModelLoadPlot.Height), (bitmap.Width, bitmap.Height));
        var colors = Enumerable.Range(0, 200).Select(i => bitmap.GetPixel(i * 37 % bitmap.Width, i * 23 % bitmap.Height)).Distinct().Count();
        Assert.True(colors > 5, $"{colors} colors: the picture should hold a heat map");
    }

    private static double Balancedness(long[,] load, int layer)
    {
        var row = Enumerable.Range(0, Experts).Select(e => load[layer, e]).ToArray();
        return row.Max() == 0 ? 1.0 : row.Sum() / (double)Experts / row.Max();
    }

    private static long[,] ToMatrix(ulong[] load)
    {
        var matrix = new long[Layers, Experts];
        for (var i = 0; i < load.Length; i++)
        {
            matrix[i / Experts, i % Experts] = (long)load[i];
        }

        return matrix;
    }


    private sealed class DisposableList(IEnumerable<ModelRoutingStats> models) : List<ModelRoutingStats>(models), IDisposable
    {
        public void Dispose() => ForEach(model => model.Dispose());
    }
}
