using System.Text.Json;
using System.Text.Json.Nodes;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Serialization;
using static MoeGpuStats.Tests.Support.Moegs;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary>
/// <c>moegs merge</c> run in-process: snapshots of one layer and of whole models merged, what report and plan
/// read back, and the one-line errors for files that do not merge.
/// </summary>
public sealed class MergeCommandTests : IDisposable
{
    private const int Steps = 5;
    private const int Layers = 3;
    private const int Tokens = 6;
    private const int TopK = 2;
    private const int Experts = 8;

    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-merge-");

    public void Dispose() => _folder.Delete(recursive: true);

    [Fact]
    public void MergeChecksItsOutputBeforeReadingAndNamesMismatchedFiles()
    {
        var four = _folder.SaveSnapshot("four.json", experts: 4);
        var eight = _folder.SaveSnapshot("eight.json", experts: 8);

        var (code, _, error) = Run("merge", four, four, "-o", Path.Combine(_folder.FullName, "nodir", "c.json"));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith($"--output {Path.Combine(_folder.FullName, "nodir", "c.json")}: the folder", error);

        (code, _, error) = Run("merge", four, eight, "-o", Path.Combine(_folder.FullName, "c.json"));
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"{four} has 4 experts, {eight} has 8; only snapshots of the same experts merge (a replay without --experts counts experts up to the largest id in its trace, which differs by rank: replay each rank with --experts).", error.Trim());
        Assert.DoesNotContain("(Parameter", error);
    }

    /// <summary>A hard link to a rank's snapshot is that snapshot, as a symbolic link is: refused, not counted twice.</summary>
    [Fact]
    public void AHardLinkToASnapshotIsRefusedAsTheSameFile()
    {
        var first = _folder.SaveSnapshot("rank0.json", experts: 4);
        var other = _folder.SaveSnapshot("rank1.json", experts: 4, firstSlot: 3);
        var hard = Path.Combine(_folder.FullName, "rank0-hard.json");
        Assert.Equal(0, Mono.Unix.Native.Syscall.link(first, hard));

        var (code, output, error) = Run("merge", first, other, hard);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Equal($"{hard}: the same file as {first}; give each rank's snapshot once.", error.Trim());
    }

    /// <summary>A copy of one rank's snapshot merges with a warning naming both files.</summary>
    [Fact]
    public void SnapshotsOfTheSameBytesMergeWithAWarning()
    {
        var first = _folder.SaveSnapshot("rank0.json", experts: 4);
        var copy = Path.Combine(_folder.FullName, "rank0-copy.json");
        File.Copy(first, copy);
        var other = _folder.SaveSnapshot("rank1.json", experts: 4, firstSlot: 3);
        var merged = Path.Combine(_folder.FullName, "merged.json");

        var (code, _, error) = Run("merge", first, other, copy, "-o", merged);

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains($"warning: {copy} holds the same bytes as {first} (a copy?); if it is the same rank, the merge counts it twice.", error);
        var (distinct, _, quiet) = Run("merge", first, other, "-o", merged);
        Assert.Equal(ExitCodes.Ok, distinct);
        Assert.DoesNotContain("warning", quiet);
    }

    /// <summary>
    /// A merge given beside other snapshots is named in a note (a rank given both alone and inside it would count twice,
    /// and no file says which ranks a merge holds), and the heading counts the snapshots inside it as the report does.
    /// </summary>
    [Fact]
    public void AMergeGivenBesideOtherSnapshotsIsNoted()
    {
        var first = _folder.SaveSnapshot("rank0.json", experts: 4);
        var other = _folder.SaveSnapshot("rank1.json", experts: 4, firstSlot: 3);
        var job = Path.Combine(_folder.FullName, "job.json");
        var (merged, _, quiet) = Run("merge", first, other, "-o", job);
        Assert.Equal(ExitCodes.Ok, merged);
        Assert.DoesNotContain("note:", quiet);

        var (code, output, error) = Run("merge", first, other, job);

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains($"note: {job} is itself a merge of 2 snapshots: a rank's snapshot given both alone and inside a merge is counted twice; give each rank once, alone or in one merge.", error);
        Assert.StartsWith("merge of 3 snapshots (4 with those merged in them): one layer of 4 experts", output);
        var copy = Path.Combine(_folder.FullName, "job-copy.json");
        File.Copy(job, copy);
        var (twice, _, twiceError) = Run("merge", job, first, copy);
        Assert.Equal(ExitCodes.Ok, twice);
        Assert.Contains($"note: {job} is itself a merge of 2 snapshots, as are 1 more of the files given: ", twiceError);
        var (alone, aloneOutput, aloneError) = Run("merge", job);
        Assert.Equal(ExitCodes.Ok, alone);
        Assert.DoesNotContain("note:", aloneError);
        Assert.StartsWith("merge of 1 snapshot (2 with those merged in them)", aloneOutput);
    }

    /// <summary>
    /// Parts that route clearly different slots per token (top-2 beside top-8) are noted, for layers and models, and
    /// still merge; ranks of one top-k whose ids name no expert now and then (7 of 8 slots per token) are not, nor a
    /// decision's histogram of top-2 beside top-2 ids (its routed slots are its tokens), nor a file without
    /// <c>routed_slots</c>, as the seed writes it.
    /// </summary>
    [Fact]
    public void PartsOfDifferentTopKAreNoted()
    {
        var (top2, top8, invalid) = (Layer("top2.json", 2, []), Layer("top8.json", 8, []), Layer("invalid.json", 8, [5]));
        var (model2, model8) = (Model("model2.json", 2), Model("model8.json", 8));

        var (code, output, error) = Run("merge", top2, top8);
        var (models, _, modelsError) = Run("merge", model2, model8);
        var (same, _, sameError) = Run("merge", top8, invalid);

        Assert.Equal(ExitCodes.Ok, code);
        Assert.StartsWith("merge of 2 snapshots: one layer of 8 experts", output);
        Assert.Equal($"note: {top2} routes 2 slots per token on average, {top8} 8 slots: ranks of one job route each token to the same top-k (ids naming no expert and partly padded tokens lower the average a little); snapshots of routers of different top-k add up to no router's load.", error.Trim());
        Assert.Equal(ExitCodes.Ok, models);
        Assert.Contains($"note: {model2} routes 2 slots per token on average, {model8} 8 slots: ", modelsError);
        Assert.Equal(ExitCodes.Ok, same);
        Assert.DoesNotContain("note:", sameError);

        var decision = Path.Combine(_folder.FullName, "decision.json");
        using (var stats = new RoutingStats(new RoutingStatsOptions { Experts = 8 }))
        {
            // 4 tokens of top-2: 8 slots on experts 0 and 1.
            stats.RecordRouting(new RoutingDecision { ExpertCapacities = [4, 4, 0, 0, 0, 0, 0, 0], TotalTokens = 4 });
            RoutingStatsFile.Save(stats, decision);
        }

        var seed = Path.Combine(_folder.FullName, "seed.json");
        var fields = JsonNode.Parse(File.ReadAllText(top2))!.AsObject();
        Assert.True(fields.Remove("routed_slots"));
        File.WriteAllText(seed, fields.ToJsonString());
        var (mixed, _, mixedError) = Run("merge", decision, top2, seed);
        Assert.Equal(ExitCodes.Ok, mixed);
        Assert.DoesNotContain("note:", mixedError);

        string Layer(string name, int topK, int[] invalidSlots)
        {
            using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 8 });
            // 4 tokens, each to experts 0..topK-1; the slots named take an id of no expert.
            var ids = Enumerable.Range(0, 4 * topK).Select(i => invalidSlots.Contains(i) ? 99 : i % topK).ToArray();
            stats.RecordRouting(ids, tokens: 4, topK: topK);
            var path = Path.Combine(_folder.FullName, name);
            RoutingStatsFile.Save(stats, path);
            return path;
        }

        string Model(string name, int topK)
        {
            using var stats = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 8 });
            stats.RecordStep([.. Enumerable.Range(0, 2 * 3 * topK).Select(i => i % topK)], tokens: 3, topK: topK);
            var path = Path.Combine(_folder.FullName, name);
            SnapshotFile.Save(stats, path);
            return path;
        }
    }

    /// <summary>One snapshot merges to itself with a warning (a glob of ranks' files that matched one), its counts unchanged.</summary>
    [Fact]
    public void OneSnapshotMergesWithAWarning()
    {
        var only = _folder.SaveSnapshot("rank0.json", experts: 4);
        var merged = Path.Combine(_folder.FullName, "merged.json");

        var (code, _, error) = Run("merge", only, "-o", merged);

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains($"warning: one snapshot given ({only}): the merge is that snapshot alone; give every rank's.", error);
        using var original = RoutingStatsFile.Load(only);
        using var result = RoutingStatsFile.Load(merged);
        Assert.Equal(original.ExpertTokenCounts, result.ExpertTokenCounts);
    }

    /// <summary>
    /// Many copies of one snapshot are counted in the warning, with a few named; each set of copies has its own
    /// warning.
    /// </summary>
    [Fact]
    public void ManyCopiesOfASnapshotAreCountedInTheWarning()
    {
        var first = _folder.SaveSnapshot("rank0.json", experts: 4);
        var other = _folder.SaveSnapshot("rank1.json", experts: 4, firstSlot: 3);
        var copies = Enumerable.Range(1, 5).Select(i => Path.Combine(_folder.FullName, $"rank0-copy{i}.json")).ToArray();
        foreach (var copy in copies)
        {
            File.Copy(first, copy);
        }

        var otherCopy = Path.Combine(_folder.FullName, "rank1-copy.json");
        File.Copy(other, otherCopy);
        var merged = Path.Combine(_folder.FullName, "merged.json");

        var (code, _, error) = Run(["merge", first, other, .. copies, otherCopy, "-o", merged]);

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains($"warning: {copies[0]}, {copies[1]}, {copies[2]} and 2 more hold the same bytes as {first} (copies?); if they are the same rank, the merge counts it 6 times.", error);
        Assert.Contains($"warning: {otherCopy} holds the same bytes as {other} (a copy?); if it is the same rank, the merge counts it twice.", error);
    }

    /// <summary>Three copies of one snapshot are all named in the warning, the last after "and", with none left to count.</summary>
    [Fact]
    public void ThreeCopiesOfASnapshotAreAllNamed()
    {
        var first = _folder.SaveSnapshot("rank0.json", experts: 4);
        var copies = Enumerable.Range(1, 3).Select(i => Path.Combine(_folder.FullName, $"rank0-copy{i}.json")).ToArray();
        foreach (var copy in copies)
        {
            File.Copy(first, copy);
        }

        var (code, _, error) = Run(["merge", first, .. copies]);

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains($"warning: {copies[0]}, {copies[1]} and {copies[2]} hold the same bytes as {first} (copies?); if they are the same rank, the merge counts it 4 times.", error);
    }

    /// <summary>
    /// --ep-size is checked against the first snapshot, a model's: a layer's snapshot after models is refused as the other kind
    /// (bad input) beside the first file, whose kind it names, not as an --ep-size given for snapshots that all hold one layer
    /// (a usage error that is not so).
    /// </summary>
    [Fact]
    public void ALayerAfterModelsWithEpSizeIsRefusedAsTheOtherKind()
    {
        var (model, other) = (Path.Combine(_folder.FullName, "model.json"), Path.Combine(_folder.FullName, "other.json"));
        foreach (var (path, first) in new[] { (model, 0), (other, 3) })
        {
            using var stats = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
            stats.RecordStep([first, 1, 2, 3], tokens: 2, topK: 1);
            SnapshotFile.Save(stats, path);
        }

        var layer = _folder.SaveSnapshot("layer.json", experts: 4);

        var (code, output, error) = Run("merge", model, other, layer, "--ep-size", "2");

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{model} holds a model of 2 layers of 4 experts, {layer} holds one layer of 4 experts; merge layers with layers and models with models.", error.Trim());
    }

    /// <summary>
    /// --ep-size on model snapshots: report gives the balance over ranks that the replay which saved the
    /// snapshot gave, merge the merged model's; snapshots of one layer, or ranks that do not divide the
    /// experts, are refused.
    /// </summary>
    [Fact]
    public void EpSizeReportsTheBalanceOverRanksOfASavedOrMergedModel()
    {
        var saved = new string[2];
        string replayRanks = "";
        for (var rank = 0; rank < 2; rank++)
        {
            var npy = _folder.WriteInt32($"ep{rank}.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ModelTrace.Ids(Steps, Layers, Tokens, seed: 7 + rank));
            saved[rank] = Path.ChangeExtension(npy, ".json");
            var (code, output, error) = Moegs.Run("replay", npy, "--experts", $"{Experts}", "--window", "3", "--ep-size", "2", "--json", "--save", saved[rank]);
            Assert.True(code == ExitCodes.Ok, error);
            replayRanks = rank == 0 ? EpRanks(output) : replayRanks;
        }

        var (reportCode, reportOut, reportError) = Moegs.Run("report", saved[0], "--ep-size", "2", "--json");
        Assert.True(reportCode == ExitCodes.Ok, reportError);
        Assert.Equal(replayRanks, EpRanks(reportOut));

        var (mergeCode, mergeOut, mergeError) = Moegs.Run("merge", saved[0], saved[1], "--ep-size", "4", "--json");
        Assert.True(mergeCode == ExitCodes.Ok, mergeError);
        using var parts = new DisposableList(saved.Select(path => SnapshotFile.Load(path).Model!));
        using var merged = ModelRoutingStats.Merge(parts);
        var overRanks = merged.Summary([.. Enumerable.Range(0, Experts).Select(e => e / (Experts / 4))]);
        using (var report = JsonDocument.Parse(mergeOut))
        {
            var ranks = report.RootElement.GetProperty("ep_ranks");
            Assert.Equal(2 * Steps, report.RootElement.GetProperty("steps").GetInt32());
            Assert.Equal(4, ranks.GetProperty("ranks").GetInt32());
            Assert.Equal(overRanks.Window.TokenWeightedBalancedness, ranks.GetProperty("window").GetProperty("token_weighted_balancedness").GetDouble());
            Assert.Equal(overRanks.SinceStart.MinBalancedness, ranks.GetProperty("since_start").GetProperty("min_balancedness").GetDouble());
        }

        var (textCode, textOut, _) = Moegs.Run("report", saved[0], "--ep-size", "2");
        Assert.Equal(ExitCodes.Ok, textCode);
        Assert.Contains("Model over 2 EP ranks (4 experts each", textOut, StringComparison.Ordinal);
        (textCode, textOut, _) = Moegs.Run("merge", saved[0], saved[1]);
        Assert.Equal(ExitCodes.Ok, textCode);
        Assert.Contains($"merge of 2 model snapshots: {Layers} layers of {Experts} experts, the ranks' steps summed", textOut, StringComparison.Ordinal);

        var layer = _folder.SaveSnapshot("layer.json", experts: Experts);
        var (oneLayer, _, oneLayerError) = Moegs.Run("report", layer, "--ep-size", "2");
        Assert.Equal(ExitCodes.Usage, oneLayer);
        Assert.Equal($"--ep-size 2: the balance over expert-parallel ranks is a model's, across its layers; {layer} holds one layer.", oneLayerError.Trim());
        var (uneven, _, unevenError) = Moegs.Run("merge", saved[0], saved[1], "--ep-size", "3");
        Assert.Equal(ExitCodes.Usage, uneven);
        Assert.Equal($"--ep-size 3: {Experts} experts do not split evenly over 3 ranks; give a divisor of {Experts}.", unevenError.Trim());
    }

    /// <summary>The <c>ep_ranks</c> object of a model's JSON report, as text.</summary>
    private static string EpRanks(string report)
    {
        using var json = JsonDocument.Parse(report);
        return json.RootElement.GetProperty("ep_ranks").GetRawText();
    }

    /// <summary>
    /// Two ranks' replays saved as model snapshots merge to the counts of both, which report and plan
    /// read back; a snapshot of one layer does not merge with a model's.
    /// </summary>
    [Fact]
    public void ModelSnapshotsSaveMergeReportAndPlan()
    {
        var rank0 = _folder.WriteInt32("rank0.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ModelTrace.Ids(Steps, Layers, Tokens, seed: 1));
        var rank1 = _folder.WriteInt32("rank1.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ModelTrace.Ids(Steps, Layers, Tokens, seed: 2));
        var saved = new[] { rank0, rank1 }.Select(npy => Path.ChangeExtension(npy, ".json")).ToArray();
        for (var rank = 0; rank < 2; rank++)
        {
            var (code, _, error) = Moegs.Run("replay", rank == 0 ? rank0 : rank1, "--experts", $"{Experts}", "--window", "3", "--save", saved[rank]);
            Assert.True(code == ExitCodes.Ok, error);
            Assert.Contains($"snapshot: {saved[rank]}", error);
        }

        var merged = Path.Combine(Path.GetDirectoryName(rank0)!, "merged.json");
        var (mergeCode, mergeOut, mergeError) = Moegs.Run("merge", saved[0], saved[1], "-o", merged, "--json");
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
        var (reportCode, reportOut, reportError) = Moegs.Run("report", merged, "--json");
        Assert.True(reportCode == ExitCodes.Ok, reportError);
        Assert.Equal(mergeOut, reportOut);
        using (var report = JsonDocument.Parse(reportOut))
        {
            Assert.Equal(2 * Steps, report.RootElement.GetProperty("steps").GetInt32());
            Assert.Equal(2, report.RootElement.GetProperty("merged_parts").GetInt32());
        }

        // The saved merge says what its steps and its window are: the ranks' steps summed, and each rank's newest.
        var (textCode, text, _) = Moegs.Run("report", merged);
        Assert.Equal(ExitCodes.Ok, textCode);
        Assert.StartsWith($"report {merged}: a model of {Layers} layers of {Experts} experts, a merge of 2 snapshots", text);
        Assert.Contains("Model, over the window, the newest 3 steps (at most) of each of the 2 merged snapshots", text);
        Assert.Contains($"Model, since the start, {2 * Steps} steps summed over 2 merged snapshots", text);
        Assert.Equal(ToMatrix(whole.Model!.WindowLoad()), LoadMatrix.Read(merged));
        var (planCode, plan, planError) = Moegs.Run("plan", merged, "--replicas", $"{Experts}", "--gpus", "2");
        Assert.True(planCode == ExitCodes.Ok, planError);
        Assert.Contains($"load: the snapshot's window load: the newest 3 steps (at most) of each of 2 merged snapshots ({2 * Steps} steps summed)", plan);

        var single = _folder.WriteInt32("layer.npy", $"{Tokens}, {TopK}", ModelTrace.Ids(1, 1, Tokens, seed: 3));
        var singleSaved = Path.ChangeExtension(single, ".json");
        Assert.Equal(ExitCodes.Ok, Moegs.Run("replay", single, "--experts", $"{Experts}", "--save", singleSaved).Code);
        var (kindCode, _, kindError) = Moegs.Run("merge", saved[0], singleSaved, "-o", Path.Combine(Path.GetDirectoryName(rank0)!, "mixed.json"));
        Assert.Equal(ExitCodes.BadInput, kindCode);
        Assert.Equal($"{saved[0]} holds a model of {Layers} layers of {Experts} experts, {singleSaved} holds one layer of {Experts} experts; merge layers with layers and models with models.", kindError.Trim());
        (kindCode, _, kindError) = Moegs.Run("merge", singleSaved, saved[0]);
        Assert.Equal(ExitCodes.BadInput, kindCode);
        Assert.Equal($"{singleSaved} holds one layer of {Experts} experts, {saved[0]} holds a model of {Layers} layers of {Experts} experts; merge layers with layers and models with models.", kindError.Trim());
    }

    /// <summary>
    /// Ranks whose windows each held every step merge to a window of one rank's steps that holds all
    /// the load: the report says so in one span, as for a run its window holds whole.
    /// </summary>
    [Fact]
    public void AMergeOfWholeWindowsIsReportedAsOneSpan()
    {
        var saved = new[] { 1, 2 }.Select(seed =>
        {
            var npy = _folder.WriteInt32($"whole{seed}.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ModelTrace.Ids(Steps, Layers, Tokens, seed));
            var json = Path.ChangeExtension(npy, ".json");
            Assert.Equal(ExitCodes.Ok, Moegs.Run("replay", npy, "--experts", $"{Experts}", "--save", json).Code);
            return json;
        }).ToArray();
        var merged = Path.Combine(_folder.FullName, "whole.json");
        Assert.Equal(ExitCodes.Ok, Moegs.Run("merge", saved[0], saved[1], "-o", merged).Code);

        var (code, text, error) = Moegs.Run("report", merged);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"Model, over all {2 * Steps} steps summed over 2 merged snapshots (the window, {Steps} steps long, holds all their load)", text);
        Assert.DoesNotContain("Model, since the start", text);
    }

    /// <summary>Models of different step counts merge, with a note that the merge takes them as ranks stepping together; the same counts bring none.</summary>
    [Fact]
    public void ModelsOfDifferentStepCountsMergeWithANote()
    {
        string Saved(string name, int steps, int seed)
        {
            var npy = _folder.WriteInt32($"{name}.npy", $"{steps}, {Layers}, {Tokens}, {TopK}", ModelTrace.Ids(steps, Layers, Tokens, seed));
            var json = Path.ChangeExtension(npy, ".json");
            Assert.Equal(ExitCodes.Ok, Moegs.Run("replay", npy, "--experts", $"{Experts}", "--save", json).Code);
            return json;
        }

        var (early, late, twin) = (Saved("early", Steps, 1), Saved("late", Steps + 2, 2), Saved("twin", Steps, 3));
        var (code, _, error) = Moegs.Run("merge", early, late, "--json");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"note: {early} holds {Steps} steps, {late} {Steps + 2} steps: merge takes the snapshots as ranks of one job", error);

        (code, _, error) = Moegs.Run("merge", early, twin, "--json");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.DoesNotContain("note:", error);

        // A merge of two ranks sums their steps: per rank, as many as a third rank's.
        var pair = Path.Combine(_folder.FullName, "pair.json");
        Assert.Equal(ExitCodes.Ok, Moegs.Run("merge", early, twin, "-o", pair).Code);
        var third = Saved("third", Steps, 4);
        (code, _, error) = Moegs.Run("merge", pair, third, "--json");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.DoesNotContain("merge takes the snapshots as ranks", error);

        (code, _, error) = Moegs.Run("merge", pair, late, "--json");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"note: {pair} holds {2 * Steps} steps of 2 merged ranks, {late} {Steps + 2} steps: merge takes", error);

        // One note, on the first part that differs: every later one would repeat it.
        var later = Saved("later", Steps + 3, 5);
        (code, _, error) = Moegs.Run("merge", early, late, later, "--json");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal([$"note: {early} holds {Steps} steps, {late} {Steps + 2} steps"], error.Split('\n').Where(line => line.StartsWith("note:", StringComparison.Ordinal)).Select(line => line[..line.IndexOf(": merge", StringComparison.Ordinal)]));
    }

    /// <summary>Models of different shapes are refused in one line naming the files.</summary>
    [Fact]
    public void ModelSnapshotsOfDifferentShapesDoNotMerge()
    {
        var three = _folder.WriteInt32("three.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ModelTrace.Ids(Steps, Layers, Tokens, seed: 1));
        var two = _folder.WriteInt32("two.npy", $"{Steps}, 2, {Tokens}, {TopK}", ModelTrace.Ids(Steps, 2, Tokens, seed: 1));
        foreach (var npy in new[] { three, two })
        {
            Assert.Equal(ExitCodes.Ok, Moegs.Run("replay", npy, "--experts", $"{Experts}", "--save", Path.ChangeExtension(npy, ".json")).Code);
        }

        var (code, _, error) = Moegs.Run("merge", Path.ChangeExtension(three, ".json"), Path.ChangeExtension(two, ".json"), "-o", Path.ChangeExtension(three, ".m.json"));

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal(
            $"{Path.ChangeExtension(three, ".json")} holds {Layers} layers of {Experts} experts with a window of 1,000 steps and no capacity, "
            + $"{Path.ChangeExtension(two, ".json")} holds 2 layers of {Experts} experts with a window of 1,000 steps and no capacity; only models of the same layers, experts, window, capacity and --skip-empty-steps merge.",
            error.Trim());
        Assert.False(File.Exists(Path.ChangeExtension(three, ".m.json")));

        // Ranks of other experts: the experts a replay took from its own largest id, most likely.
        var fewer = Path.ChangeExtension(three, ".7.json");
        Assert.Equal(ExitCodes.Ok, Moegs.Run("replay", three, "--experts", "7", "--save", fewer).Code);
        (code, _, error) = Moegs.Run("merge", Path.ChangeExtension(three, ".json"), fewer);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.EndsWith(
            "only models of the same layers, experts, window, capacity and --skip-empty-steps merge (a replay without --experts counts experts up to the largest id in its trace, which differs by rank: replay each rank with --experts).",
            error.Trim(),
            StringComparison.Ordinal);

        // Ranks replayed one with --skip-empty-steps, one without: the CLI names it, as it names the other settings.
        var skipping = Path.ChangeExtension(three, ".skip.json");
        Assert.Equal(ExitCodes.Ok, Moegs.Run("replay", three, "--experts", $"{Experts}", "--skip-empty-steps", "--save", skipping).Code);
        (code, _, error) = Moegs.Run("merge", Path.ChangeExtension(three, ".json"), skipping);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal(
            $"{Path.ChangeExtension(three, ".json")} holds {Layers} layers of {Experts} experts with a window of 1,000 steps and no capacity, "
            + $"{skipping} holds {Layers} layers of {Experts} experts with a window of 1,000 steps and no capacity, empty steps left out (--skip-empty-steps); only models of the same layers, experts, window, capacity and --skip-empty-steps merge.",
            error.Trim());

        var capped = Path.ChangeExtension(three, ".capped.json");
        Assert.Equal(ExitCodes.Ok, Moegs.Run("replay", three, "--experts", $"{Experts}", "--capacity", "4", "--save", capped).Code);
        (code, _, error) = Moegs.Run("merge", capped, Path.ChangeExtension(three, ".json"));
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.StartsWith($"{capped} holds {Layers} layers of {Experts} experts with a window of 1,000 steps and a capacity of 4 slots per expert, {Path.ChangeExtension(three, ".json")} holds", error.Trim(), StringComparison.Ordinal);
    }

    /// <summary>Snapshots of one layer merge to the counts and totals of both, what RoutingStats.Merge gives, written to --output and printed as JSON.</summary>
    [Fact]
    public void SnapshotsOfOneLayerMergeToTheCountsOfBoth()
    {
        var first = Save("rank0.json", new RoutingStatsOptions { Experts = 4 }, [0, 1, 0, 2, 0, 3, 0, 1], tokens: 4);
        var second = Save("rank1.json", new RoutingStatsOptions { Experts = 4 }, [3, 2, 3, 1], tokens: 2);
        var merged = Path.Combine(_folder.FullName, "merged.json");

        var (code, output, error) = Run("merge", first, second, "-o", merged, "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"snapshot: {merged}", error);
        using var whole = RoutingStatsFile.Load(merged);
        Assert.Equal([4UL, 3UL, 2UL, 3UL], whole.ExpertTokenCounts);
        Assert.Equal((2UL, 6UL), (whole.TotalRoutings, whole.TotalTokens));
        using var firstRead = RoutingStatsFile.Load(first);
        using var secondRead = RoutingStatsFile.Load(second);
        using var expected = RoutingStats.Merge([firstRead, secondRead]);
        Assert.Equal(JsonSerializer.Serialize(expected), JsonSerializer.Serialize(whole));
        Assert.Equal(JsonSerializer.Serialize(whole), output.Trim());

        var (textCode, text, _) = Run("merge", first, second, "-o", Path.Combine(_folder.FullName, "again.json"));
        Assert.Equal(ExitCodes.Ok, textCode);
        Assert.StartsWith("merge of 2 snapshots: one layer of 4 experts", text);
        Assert.Contains("a merge of 2 snapshots joins their variance histories end to end, so this is no trend over time", text);

        // A saved merge says so itself: report of it tells the same, and so does a merge of it with a third snapshot.
        var (reportCode, report, _) = Run("report", merged);
        Assert.Equal(ExitCodes.Ok, reportCode);
        Assert.StartsWith($"report {merged}: one layer of 4 experts, a merge of 2 snapshots", report);
        Assert.Contains("a merge of 2 snapshots joins their variance histories end to end, so this is no trend over time", report);
        var (thirdCode, third, _) = Run("merge", merged, first);
        Assert.Equal(ExitCodes.Ok, thirdCode);
        Assert.Contains("a merge of 3 snapshots joins their variance histories", third);
    }

    /// <summary>
    /// merge reads its snapshots one at a time, in the order given, and writes what the library's merge of every part
    /// held at once writes, byte for byte: for models of different step counts, and for layers after an idle rank,
    /// whose empty counts size nothing; a part that does not fit is named even after several that do.
    /// </summary>
    [Fact]
    public void AMergeOfManyRanksIsTheMergeOfAllOfThemAtOnce()
    {
        var models = Enumerable.Range(0, 6).Select(rank =>
        {
            var steps = Steps + (rank % 3);
            var npy = _folder.WriteInt32($"model{rank}.npy", $"{steps}, {Layers}, {Tokens}, {TopK}", ModelTrace.Ids(steps, Layers, Tokens, seed: 10 + rank));
            var json = Path.ChangeExtension(npy, ".json");
            Assert.Equal(ExitCodes.Ok, Run("replay", npy, "--experts", $"{Experts}", "--window", "4", "--save", json).Code);
            return json;
        }).ToArray();
        var idle = Path.Combine(_folder.FullName, "idle.json");
        using (var nothing = new RoutingStats())
        {
            RoutingStatsFile.Save(nothing, idle);
        }

        var layers = new[] { idle }.Concat(Enumerable.Range(0, 5).Select(rank => Save($"layer{rank}.json", new RoutingStatsOptions { Experts = 4 }, [rank % 4, 3, 2, rank % 2], tokens: 2))).ToArray();

        foreach (var (parts, name) in new[] { (models, "models.json"), (layers, "layers.json") })
        {
            var merged = Path.Combine(_folder.FullName, name);
            var (code, _, error) = Run(["merge", .. parts, "-o", merged]);
            Assert.True(code == ExitCodes.Ok, error);

            var loaded = parts.Select(SnapshotFile.Load).ToArray();
            try
            {
                var expected = Path.Combine(_folder.FullName, "expected-" + name);
                if (loaded[0].Model is null)
                {
                    using var all = RoutingStats.Merge(loaded.Select(part => part.Layer!));
                    RoutingStatsFile.Save(all, expected);
                }
                else
                {
                    using var all = ModelRoutingStats.Merge(loaded.Select(part => part.Model!));
                    SnapshotFile.Save(all, expected);
                }

                Assert.Equal(File.ReadAllBytes(expected), File.ReadAllBytes(merged));
            }
            finally
            {
                Array.ForEach(loaded, part => part.Dispose());
            }
        }

        var other = Save("other.json", new RoutingStatsOptions { Experts = 5 }, [4, 0], tokens: 2);
        var (refusedCode, _, refused) = Run(["merge", .. layers, other]);
        Assert.Equal(ExitCodes.BadInput, refusedCode);
        Assert.StartsWith($"{layers[1]} has 4 experts, {other} has 5; only snapshots of the same experts merge", refused.Trim());
    }

    /// <summary>Without --output, merge writes nothing and prints the merged snapshot with --json.</summary>
    [Fact]
    public void AMergeWithoutAnOutputPrintsTheMergedSnapshot()
    {
        var first = Save("first.json", new RoutingStatsOptions { Experts = 4 }, [0, 1, 2, 3], tokens: 4);
        var second = Save("second.json", new RoutingStatsOptions { Experts = 4 }, [3, 3, 2, 2], tokens: 4);

        var (code, output, error) = Run("merge", first, second, "--json");

        Assert.True(code == ExitCodes.Ok, error);
        using var merged = System.Text.Json.JsonSerializer.Deserialize<RoutingStats>(output)!;
        Assert.Equal([1UL, 1, 3, 3], merged.ExpertTokenCounts);
        Assert.Equal(["first.json", "second.json"], Directory.GetFiles(_folder.FullName).Select(Path.GetFileName).Order());
    }

    /// <summary>Snapshots of different capacities are refused in one line naming both files and nothing is written.</summary>
    [Fact]
    public void SnapshotsOfDifferentCapacitiesDoNotMerge()
    {
        var capped = Save("capped.json", new RoutingStatsOptions { Experts = 4, ExpertCapacity = 2 }, [0, 1, 2, 3], tokens: 4);
        var open = Save("open.json", new RoutingStatsOptions { Experts = 4 }, [0, 1, 2, 3], tokens: 4);
        var merged = Path.Combine(_folder.FullName, "merged.json");

        var (code, output, error) = Run("merge", capped, open, "-o", merged);

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{capped} has a capacity of 2 slots per expert, {open} has no capacity (the seed's placeholder of 100 slots per expert); only snapshots of the same capacity merge.", error.Trim());
        Assert.False(File.Exists(merged));
    }

    /// <summary>
    /// Every refusal of one-layer snapshots names the files, not the merge's parts: a capacity of 100 against none (the
    /// placeholder's number), idle ranks whose experts differ, and a sum past what a snapshot holds (the file added).
    /// </summary>
    [Fact]
    public void OneLayerRefusalsNameTheFiles()
    {
        var hundred = Save("hundred.json", new RoutingStatsOptions { Experts = 4, ExpertCapacity = 100 }, [0, 1, 2, 3], tokens: 4);
        var open = Save("open.json", new RoutingStatsOptions { Experts = 4 }, [0, 1, 2, 3], tokens: 4);
        var (code, _, error) = Run("merge", open, hundred);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"{open} has no capacity (the seed's placeholder of 100 slots per expert), {hundred} has a capacity of 100 slots per expert; only snapshots of the same capacity merge.", error.Trim());

        var idleFour = SaveIdle("idle4.json", new RoutingStatsOptions { Experts = 4 });
        var idleFive = SaveIdle("idle5.json", new RoutingStatsOptions { Experts = 5 });
        (code, _, error) = Run("merge", idleFour, open, idleFive);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.StartsWith($"{idleFour} has experts = 4, {idleFive} has experts = 5; only snapshots of the same experts merge", error.Trim());

        // The file named is the first whose options fix the experts, not the first given.
        var idleAny = SaveIdle("idle.json", new RoutingStatsOptions());
        (code, _, error) = Run("merge", idleAny, idleFour, idleFive);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.StartsWith($"{idleFour} has experts = 4, {idleFive} has experts = 5; only snapshots", error.Trim());

        var full = Path.Combine(_folder.FullName, "full.json");
        File.WriteAllText(full, Snapshots.Snapshot(totalTokens: long.MaxValue, tokensDropped: 0, totalRoutings: 1UL << 33, experts: 4));
        var second = Save("second.json", new RoutingStatsOptions { Experts = 4 }, [3, 2, 1, 0], tokens: 4);
        (code, _, error) = Run("merge", open, second, full);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.StartsWith($"cannot merge {full} with the 2 snapshots before it: The merged total_tokens exceeds 9,223,372,036,854,775,807", error.Trim());

        // What only the whole merge can refuse, past the last file, names them all (after the warning that the two are one file's bytes).
        var halves = new[] { "half0.json", "half1.json" }.Select(name => Path.Combine(_folder.FullName, name)).ToArray();
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(open))!;
        json["merged_parts"] = RoutingStats.MaxMergedParts / 2 + 1;
        Array.ForEach(halves, half => File.WriteAllText(half, json.ToJsonString()));
        (code, _, error) = Run("merge", halves[0], halves[1], "-o", Path.Combine(_folder.FullName, "past.json"));
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"cannot merge the 2 snapshots: The merge would combine {RoutingStats.MaxMergedParts + 2:N0} recordings (merged_parts); at most {RoutingStats.MaxMergedParts:N0} merge.", error.Trim().Split('\n')[^1]);
        Assert.False(File.Exists(Path.Combine(_folder.FullName, "past.json")));
    }

    /// <summary>Saves statistics of <paramref name="options"/> after one record of <paramref name="ids"/> (top-1) as <paramref name="name"/>.</summary>
    private string Save(string name, RoutingStatsOptions options, int[] ids, int tokens)
    {
        using var stats = new RoutingStats(options);
        stats.RecordRouting(ids, tokens, ids.Length / tokens);
        var path = Path.Combine(_folder.FullName, name);
        RoutingStatsFile.Save(stats, path);
        return path;
    }

    /// <summary>Saves statistics of <paramref name="options"/> that recorded nothing (an idle rank's) as <paramref name="name"/>.</summary>
    private string SaveIdle(string name, RoutingStatsOptions options)
    {
        using var stats = new RoutingStats(options);
        var path = Path.Combine(_folder.FullName, name);
        RoutingStatsFile.Save(stats, path);
        return path;
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
