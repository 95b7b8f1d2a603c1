using System.Globalization;
using System.Text.Json;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Serialization;
using SkiaSharp;
using static MoeGpuStats.Tests.Support.Moegs;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary><c>moegs report</c> run in-process: the report, JSON and picture of a saved snapshot, and the one-line errors for a file it cannot read.</summary>
public sealed class ReportCommandTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-report-");

    public void Dispose() => _folder.Delete(recursive: true);

    [Fact]
    public void AJpegPlotIsAJpeg()
    {
        var snapshot = _folder.SaveSnapshot("s.json", experts: 6);
        var jpeg = Path.Combine(_folder.FullName, "load.jpeg");

        var (code, _, error) = Run("report", snapshot, "--plot", jpeg);

        Assert.True(code == ExitCodes.Ok, error);
        var bytes = File.ReadAllBytes(jpeg);
        Assert.Equal([0xFF, 0xD8, 0xFF], bytes[..3]);
        using var bitmap = SKBitmap.Decode(jpeg);
        Assert.Equal((LoadPlot.Width, LoadPlot.Height), (bitmap.Width, bitmap.Height));
    }

    /// <summary>report, as the library, refuses a file of more JSON values than any snapshot before it parses it, in one line.</summary>
    [Fact]
    public void AFileOfMoreValuesThanAnySnapshotIsRefusedInOneLine()
    {
        var path = Tests.Serialization.RoutingStatsFileTests.WriteZeros(Path.Combine(_folder.FullName, "zeros.json"), RoutingStatsFile.MaxJsonTokens);

        var (code, output, error) = Run("report", path);

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal(RoutingStatsFile.TooManyTokens(path), error.TrimEnd());
    }

    /// <summary>A snapshot with a UTF-8 byte order mark reports as the one without.</summary>
    [Fact]
    public void ASnapshotWithAByteOrderMarkReports()
    {
        var snapshot = _folder.SaveSnapshot("plain.json", experts: 6);
        var marked = Path.Combine(_folder.FullName, "marked.json");
        File.WriteAllBytes(marked, [0xEF, 0xBB, 0xBF, .. File.ReadAllBytes(snapshot)]);

        var (code, output, error) = Run("report", marked);
        var (_, plain, _) = Run("report", snapshot);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(plain.Replace("plain.json", "marked.json", StringComparison.Ordinal), output);
    }

    [Fact]
    public void TheReportOfASnapshotIsItsFiguresUnderItsName()
    {
        var path = SaveFourTokens("run.json");

        var (code, output, error) = Run("report", path);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Empty(error);
        Assert.StartsWith($"report {path}: one layer of 4 experts\n", output.ReplaceLineEndings("\n"));
        Assert.DoesNotContain("engine: ", output);
        Assert.Contains("mean of 4 experts", output);
        Assert.Contains("busiest: expert 0", output);
        Assert.Matches(@"  batches +1\r?\n", output);
        Assert.Matches(@"  tokens +4\r?\n", output);

        // The trend covers the batches there are, up to 100, and one batch is no trend.
        Assert.Contains("(tokens per expert)² per batch, over the newest 1 batch (mean variance 1.5)", output);
        Assert.Contains("too few batches to tell a trend from the batches' scatter", output);
        // Tokens per expert 4, 2, 1, 1: a mean of 2 over the most, 4.
        Assert.Matches(@"balancedness +0\.500   mean / most tokens per expert, summed over batches", output);
        Assert.Matches(@"CV \(std dev / mean\) +0\.[0-9]{3}   0 = every expert", output);
        Assert.Contains("Router losses: none recorded", output);
    }

    /// <summary>
    /// Times a snapshot may hold but no run makes print in scientific notation, not as lines of hundreds of digits: a
    /// mean of 10^300 ms, and the rate of tokens that a time of 10^-300 ms gives; so do losses of 10^30.
    /// </summary>
    [Theory]
    [InlineData(1e300, @"  mean +1e\+300 ms\r?\n")]
    [InlineData(1e-300, @"  tokens per second +4e\+303   ")]
    public void AnExtremeTimeInASnapshotPrintsInScientificNotation(double milliseconds, string line)
    {
        var path = SaveFourTokens("timed.json");
        var snapshot = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!;
        snapshot["routing_latency_stats"] = new System.Text.Json.Nodes.JsonObject
        {
            ["total_measurements"] = 1,
            ["total_latency_ms"] = milliseconds,
            ["min_latency_ms"] = milliseconds,
            ["max_latency_ms"] = milliseconds,
            ["recent_latencies"] = new System.Text.Json.Nodes.JsonArray(milliseconds),
        };
        // One batch: its losses are their averages.
        (snapshot["load_balance_loss_sum"], snapshot["average_load_balance_loss"]) = (1e30, 1e30);
        (snapshot["router_z_loss_sum"], snapshot["average_router_z_loss"]) = (-2.5e30, -2.5e30);
        File.WriteAllText(path, snapshot.ToJsonString());

        var (code, output, error) = Run("report", path);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Matches(line, output);
        Assert.Matches(@"  load-balancing loss +1e\+30\r?\n", output);
        Assert.Matches(@"  router z-loss +-2\.5e\+30\r?\n", output);
        Assert.All(output.Split('\n'), text => Assert.True(text.Length < 200, text));
    }

    /// <summary>
    /// Balancedness sums the tokens over batches, as vLLM's and the model report's do: a batch of one token
    /// beside one of 1,000 spread evenly is nearly balanced (1,001 / 8 over 126), though each batch's shares,
    /// averaged, put expert 0 at half of a batch.
    /// </summary>
    [Fact]
    public void BalancednessSumsTheTokensOverBatches()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 8 });
        stats.RecordRouting([0], tokens: 1, topK: 1);
        stats.RecordRouting([.. Enumerable.Range(0, 1_000).Select(t => t % 8)], tokens: 1_000, topK: 1);
        using var text = new StringWriter();

        RunReport.Print(text, stats, "heading", engine: null, timed: "as this test timed it");

        var expected = (1_001.0 / 8 / 126).ToString("0.000", CultureInfo.InvariantCulture);
        Assert.Matches($"  balancedness +{System.Text.RegularExpressions.Regex.Escape(expected)}   mean / most tokens per expert", text.ToString());
    }

    /// <summary>A snapshot saved before its first batch names the experts its options give (its counts are sized by the first batch, as the seed's).</summary>
    [Fact]
    public void ASnapshotOfNoBatchNamesItsExperts()
    {
        var path = Path.Combine(_folder.FullName, "fresh.json");
        using (var fresh = new RoutingStats(new RoutingStatsOptions { Experts = 4 }))
        {
            RoutingStatsFile.Save(fresh, path);
        }

        var (code, output, error) = Run("report", path);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.StartsWith($"report {path}: one layer of 4 experts\n", output.ReplaceLineEndings("\n"));
        // No batch, no trend: said as such, not as a slope of 0 over "the newest 0 batches".
        Assert.Matches(@"\n  load variance trend +-   no batch recorded\n", output.ReplaceLineEndings("\n"));
        Assert.DoesNotContain("0 batches", output);
        var other = Path.Combine(_folder.FullName, "fresh-rank1.json");
        File.Copy(path, other);
        var (mergeCode, merged, _) = Run("merge", path, other);
        Assert.Equal(ExitCodes.Ok, mergeCode);
        Assert.StartsWith("merge of 2 snapshots: one layer of 4 experts\n", merged.ReplaceLineEndings("\n"));
    }

    /// <summary>
    /// --plot on a model's snapshot writes its heat map, the picture of a model (not a layer's bars), and says where it went;
    /// the report still prints.
    /// </summary>
    [Fact]
    public void AModelsPlotIsWrittenAsItsHeatMap()
    {
        var path = Path.Combine(_folder.FullName, "model.json");
        using (var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 3, Experts = 8 }))
        {
            model.RecordStep([0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 1, 1], tokens: 2, topK: 2);
            SnapshotFile.Save(model, path);
        }

        var plot = Path.Combine(_folder.FullName, "model.png");

        var (code, output, error) = Run("report", path, "--plot", plot);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.StartsWith($"report {path}: a model of 3 layers of 8 experts", output);
        Assert.Equal($"plot: {plot}", error.Trim());
        using var bitmap = SKBitmap.Decode(plot);
        Assert.Equal((ModelLoadPlot.Width, ModelLoadPlot.Height), (bitmap.Width, bitmap.Height));
    }

    /// <summary>
    /// A model saved before its first step says it has no balance to report, rather than balance figures of 1 over
    /// "all 0 steps"; its counts and checks still print. Once a step is recorded, the model's figures are back.
    /// </summary>
    [Fact]
    public void AModelOfNoStepSaysItHasNoBalanceToReport()
    {
        var path = Path.Combine(_folder.FullName, "fresh-model.json");
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 3, Experts = 8 });
        File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(model));

        var (code, output, error) = Run("report", path, "--ep-size", "2");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("Model: no step recorded, so no balance to report", output);
        Assert.DoesNotContain("balancedness", output);
        Assert.DoesNotContain("0 steps", output);
        Assert.Contains("Counts, all layers, since the start", output);

        model.RecordStep([0, 1, 2, 3, 4, 5], 1, 2);
        File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(model));
        (code, output, error) = Run("report", path);
        Assert.True(code == ExitCodes.Ok, error);
        Assert.DoesNotContain("no step recorded", output);
        Assert.Contains("Model, over its 1 step (the window holds them all)", output);
    }

    /// <summary>
    /// Batches whose busiest expert takes more every batch read as a growing imbalance, by how much of the
    /// mean variance; the router's losses show as recorded.
    /// </summary>
    [Fact]
    public void AGrowingImbalanceIsNamedWithItsSize()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        for (var batch = 0; batch < 30; batch++)
        {
            // 8 tokens, top-1: expert 0 takes 2 + batch / 5 of them, the rest spread over the others.
            var ids = Enumerable.Range(0, 8).Select(t => t < 2 + (batch / 5) ? 0 : 1 + (t % 3)).ToArray();
            stats.RecordRouting(ids, tokens: 8, topK: 1, loadBalanceLoss: 1.25f, routerZLoss: 0.5f);
        }

        var path = Path.Combine(_folder.FullName, "growing.json");
        RoutingStatsFile.Save(stats, path);
        var (code, output, error) = Run("report", path);

        Assert.True(code == ExitCodes.Ok, error);
        var fit = VarianceTrend.Of(stats.LoadVarianceHistory, RunReport.TrendWindow);
        Assert.True(fit.IsClear && fit.Slope > 0, $"{fit}");
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"over the newest 30 batches (mean variance {RunReport.VarianceText(fit.MeanVariance)})"), output);
        Assert.Contains($"the imbalance grows: {RunReport.Significant(fit.RelativeChange * 100, signed: true)} % of the mean variance across these batches", output);
        Assert.Matches($"load variance trend +{System.Text.RegularExpressions.Regex.Escape(RunReport.Significant(fit.Slope, signed: true))}   ", output);
        Assert.Matches(@"load-balancing loss +1\.2500\r?\n", output);
        Assert.Matches(@"router z-loss +0\.5000\r?\n", output);
    }

    /// <summary>--json prints the snapshot as it reads it, alone on standard output.</summary>
    [Fact]
    public void TheJsonIsTheSnapshotAsRead()
    {
        var path = SaveFourTokens("run.json");

        var (code, output, error) = Run("report", path, "--json");

        Assert.True(code == ExitCodes.Ok, error);
        using var read = RoutingStatsFile.Load(path);
        Assert.Equal(JsonSerializer.Serialize(read), output.Trim());
        using var document = JsonDocument.Parse(output);
        Assert.Equal([4UL, 2UL, 1UL, 1UL], document.RootElement.GetProperty("expert_token_counts").EnumerateArray().Select(count => count.GetUInt64()));
    }

    /// <summary>A relative name that is not there says where it was looked for: where the program runs.</summary>
    [Fact]
    public void AMissingRelativeNameSaysWhereItWasLookedFor()
    {
        var name = $"missing-{Guid.NewGuid():N}.json";
        var (code, _, error) = Moegs.Run("report", name);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"{name}: no such file in {Directory.GetCurrentDirectory()}.", error.Trim());
    }

    /// <summary>
    /// .NET reads an argument's bytes that are not UTF-8 as U+FFFD, so a file named by them is not found although it is
    /// there: the refusal says why.
    /// </summary>
    [Fact]
    public void AMissingNameWithBytesThatAreNotUtf8SaysSo()
    {
        var name = Path.Combine(Path.GetTempPath(), $"bad\uFFFD-{Guid.NewGuid():N}.json");
        var (code, _, error) = Moegs.Run("report", name);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"{name}: no such file (the name holds \uFFFD, which may stand for bytes that are not UTF-8: moegs reads names as UTF-8, so rename the file to a UTF-8 name).", error.Trim());
    }

    /// <summary>"-", standard input to many tools, is named as such where no file of that name is there, for every command that reads files.</summary>
    [Theory]
    [InlineData("report -", "a snapshot file")]
    [InlineData("merge -", "a snapshot file")]
    [InlineData("replay -", "a .npy, .npz, .jsonl or .ndjson file")]
    [InlineData("plan - --replicas 4 --gpus 2", "a load file (.npy or .json)")]
    public void StandardInputIsNamedAsNotRead(string command, string expected)
    {
        var (code, _, error) = Moegs.Run(command.Split(' '));
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"-: moegs does not read standard input; give {expected} by its path.", error.Trim());
    }

    /// <summary>
    /// A mistyped option the parser took for a file (merge takes any number) is a usage error suggesting the
    /// option meant; a file whose name starts with '-' is still read.
    /// </summary>
    [Theory]
    [InlineData("--ouput", "--output")]
    [InlineData("--out", "--output")]
    [InlineData("--jsn", "--json")]
    public void AMissingFileNamedLikeAnOptionIsAUsageErrorSuggestingTheOption(string typo, string meant)
    {
        var path = SaveFourTokens("run.json");
        var (code, output, error) = Moegs.Run("merge", path, typo, "merged.json");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Equal($"Unrecognized option '{typo}', and no file of that name. Did you mean {meant}? Run moegs merge --help for usage.", error.Trim());

        // Relative to where the tests run: only a relative name can start with '-'.
        var dashed = $"-dashed-{Guid.NewGuid():N}.json";
        File.Copy(path, dashed);
        try
        {
            (code, _, error) = Moegs.Run("report", dashed);
        }
        finally
        {
            File.Delete(dashed);
        }

        Assert.True(code == ExitCodes.Ok, error);
    }

    /// <summary>A folder whose name starts with '-' is named as the folder it is, not as an unknown option.</summary>
    [Fact]
    public void AFolderNamedLikeAnOptionIsNamedAsAFolder()
    {
        // Relative to where the tests run: only a relative name can start with '-'.
        var dashed = Directory.CreateDirectory($"-folder-{Guid.NewGuid():N}");
        try
        {
            var (code, _, error) = Moegs.Run("report", dashed.Name);
            Assert.Equal(ExitCodes.BadInput, code);
            Assert.Equal($"{dashed.Name}: is a folder; give a snapshot file.", error.Trim());
        }
        finally
        {
            dashed.Delete();
        }
    }

    /// <summary>A mistyped option before the file is named, not the file it pushed out of place (the parser named the file).</summary>
    [Fact]
    public void AMistypedOptionBeforeTheFileIsNamedWithASuggestion()
    {
        var path = SaveFourTokens("run.json");

        var (code, _, error) = Moegs.Run("report", "--jsno", path);
        var (planCode, _, planError) = Moegs.Run("plan", "--replica", "16", "--gpus", "2", path);

        Assert.Equal((ExitCodes.Usage, ExitCodes.Usage), (code, planCode));
        Assert.Equal("Unrecognized option '--jsno', and no file of that name. Did you mean --json? Run moegs report --help for usage.", error.Trim());
        Assert.Equal("Unrecognized option '--replica', and no file of that name. Did you mean --replicas? Run moegs plan --help for usage.", planError.Trim());
    }

    /// <summary>
    /// The kernel's pseudo-files are named as such, not as empty or with .NET's own words: a /proc file reports 0 bytes
    /// and holds some; a /sys file reports a page (4,096 bytes) and holds fewer.
    /// </summary>
    [Theory]
    [InlineData("report", "/proc/self/status", "reports a size of 0 bytes yet holds some (a /proc file, written as it is read); give a snapshot file.")]
    [InlineData("plan", "/sys/devices/system/cpu/online", "bytes its size claims (a file cut while it was read, or a /sys file); give ")]
    public void AKernelPseudoFileIsNamedSo(string command, string path, string expected)
    {
        Assert.SkipUnless(File.Exists(path), $"needs {path}");
        string[] arguments = command == "plan" ? ["plan", path, "--replicas", "16", "--gpus", "4"] : [command, path];

        var (code, output, error) = Moegs.Run(arguments);

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.StartsWith($"{path}: ", error);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    /// <summary>
    /// A name that links to a pipe (<c>/dev/stdin</c>, <c>/dev/fd/N</c>, a shell's <c>&lt;(...)</c>) is refused before
    /// it is opened, as a pipe given by its own name is: reading it would wait for a writer that may never close.
    /// </summary>
    [Fact]
    public async Task ANameLinkingToAPipeIsRefusedWithoutWaiting()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "needs /proc/self/fd");
        using var pipe = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
        var path = $"/proc/self/fd/{pipe.ClientSafePipeHandle.DangerousGetHandle()}";

        var (code, output, error) = await Task.Run(() => Run("report", path), TestContext.Current.CancellationToken)
            .WaitAsync(Patience.GoAhead, TestContext.Current.CancellationToken);

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{path}: is a pipe or a device; give a snapshot file.", error.Trim());
    }

    /// <summary>A snapshot that cannot be read is one line naming the file, and exit code 1.</summary>
    [Theory]
    [InlineData("missing.json", null, "no such file.")]
    [InlineData("text.json", "not a snapshot", "")]
    [InlineData("empty.json", "{}", "")]
    [InlineData("zero.json", "", "is empty (0 bytes); give a snapshot file.")]
    [InlineData("load.npy", "\u0093NUMPY\u0001\u0000", "a .npy array, not a snapshot; this command reads the JSON that --save writes")]
    [InlineData("trace.npz", "PK\u0003\u0004rest", "a .npz archive, not a snapshot")]
    [InlineData("load.json", "[[1, 2], [3, 4]]", "a JSON array, as a window load that plan reads, not a snapshot; this command reads the JSON object that --save writes.")]
    [InlineData("trace.jsonl", "{\"step\": 0, \"topk_ids\": [[1, 2]]}\n{\"step\": 1, \"topk_ids\": [[0, 3]]}\n", "JSON lines of top-k ids, a trace, not a snapshot; `moegs replay ")]
    [InlineData("broken.json", "{\"a\": 1,\n\"b\": }", "not a routing statistics snapshot (")]
    [InlineData("blank-first.jsonl", "\n{\"step\": 0, \"topk_ids\": [[1, 2]]}\n{\"step\": 1, \"topk_ids\": [[0, 3]]}\n", "JSON lines of top-k ids, a trace")]
    [InlineData("records.jsonl", "{\"total_routings\": 1}\n{\"total_routings\": 2}\n", "not a routing statistics snapshot (")]
    [InlineData("report.json", "{\"layers\": 2, \"since_start\": {}}", "a model's report, as --json prints it, not a snapshot; this command reads the file that --save writes (replay --save FILE.json).")]
    public void ASnapshotThatCannotBeReadIsOneLineAndExitCodeOne(string name, string? content, string expected)
    {
        var path = Path.Combine(_folder.FullName, name);
        if (content is not null)
        {
            // Latin-1: each character one byte, as the NumPy magic's 0x93 is.
            File.WriteAllBytes(path, System.Text.Encoding.Latin1.GetBytes(content));
        }

        var (code, output, error) = Run("report", path);

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.StartsWith($"{path}: ", error);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    /// <summary>
    /// A snapshot past 2 GiB gave "Arithmetic operation resulted in an overflow."; one past the limit
    /// is refused by its length, unread. The file is sparse: it takes no disk.
    /// </summary>
    [Fact]
    public void ASnapshotLargerThanTheLimitIsRefusedByItsLength()
    {
        var path = Path.Combine(_folder.FullName, "huge.json");
        using (var file = new FileStream(path, FileMode.CreateNew))
        {
            file.WriteByte((byte)'{');
            file.SetLength(3L << 30);
        }

        var (code, output, error) = Run("report", path);

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{path}: 3,221,225,472 bytes; a snapshot file is at most 1,073,741,824 bytes (the largest that --save writes is under 600 MB).", error.Trim());
    }

    /// <summary>Saves one batch of 4 tokens, top-2 of 4 experts, expert 0 in every token, as <paramref name="name"/>.</summary>
    private string SaveFourTokens(string name)
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 0, 2, 0, 3, 0, 1], tokens: 4, topK: 2);
        var path = Path.Combine(_folder.FullName, name);
        RoutingStatsFile.Save(stats, path);
        return path;
    }
}
