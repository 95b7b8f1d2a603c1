using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Nodes;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Serialization;
using static MoeGpuStats.Tests.Support.TraceData;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary>
/// <c>moegs replay</c> of traces as they are recorded from real models: .npz archives and JSON lines, with
/// forward passes of different sizes. TestData/make_traces.py wrote the files with NumPy; the tests read
/// the committed copies (CI has no NumPy).
/// </summary>
public sealed partial class ReplayCommandTests
{
    /// <summary>A prefill of 7 tokens, then decode passes of 3, 2 and 1, in every format: the counts of the same steps recorded directly.</summary>
    [Theory]
    [InlineData("passes.npz", "tokens,layers,k")]
    [InlineData("passes_compressed.npz", "layers,tokens,k")]
    [InlineData("passes_step.jsonl", null)]
    [InlineData("passes_position.jsonl", null)]
    [InlineData("passes_lists.jsonl", null)]
    public void PassesOfDifferentSizesCountAsTheSameStepsRecordedDirectly(string name, string? layout)
    {
        string[] options = layout is null ? [] : ["--layout", layout];
        var (code, output, error) = Moegs.Run(["replay", Data(name), "--experts", $"{Experts}", "--json", .. options]);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(Figures(Direct(TraceData.Steps("trace_ids.json"))), Figures(output));
        Assert.DoesNotContain("warning", error);
    }

    /// <summary>
    /// np.savez with keywords, one member per layer (<c>--members layers</c>), uint8 ids. Read in its default
    /// [steps, tokens, k], which has no twin of its rank, it gets no note on the 4-D default.
    /// </summary>
    [Fact]
    public void AnArchiveOfOneMemberPerLayerCountsAsItsStepsRecordedDirectly()
    {
        var (code, output, error) = Moegs.Run("replay", Data("layers.npz"), "--members", "layers", "--experts", $"{Experts}", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(Figures(Direct(TraceData.Steps("layers_ids.json"))), Figures(output));
        Assert.DoesNotContain("note: read as", error);
    }

    /// <summary>--members is read as a word, whatever its case and the spaces around it.</summary>
    [Theory]
    [InlineData("Layers")]
    [InlineData(" LAYERS ")]
    public void MembersIsReadWhateverItsCase(string members)
    {
        var (code, output, error) = Moegs.Run("replay", Data("layers.npz"), "--members", members, "--experts", $"{Experts}", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(Figures(Direct(TraceData.Steps("layers_ids.json"))), Figures(output));
    }

    /// <summary>--skip-steps 0 leaves nothing out: the replay is the one without it.</summary>
    [Fact]
    public void SkippingNoStepsReplaysEveryStep()
    {
        var (code, output, error) = Moegs.Run("replay", Data("passes.npz"), "--layout", "tokens,layers,k", "--skip-steps", "0", "--experts", $"{Experts}", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        var (plainCode, plain, plainError) = Moegs.Run("replay", Data("passes.npz"), "--layout", "tokens,layers,k", "--experts", $"{Experts}", "--json");
        Assert.True(plainCode == ExitCodes.Ok, plainError);

        Assert.Equal(Figures(plain), Figures(output));
        using var report = JsonDocument.Parse(output);
        Assert.Equal(4, report.RootElement.GetProperty("steps").GetInt32());
    }

    /// <summary>The report's title says how the passes were told apart and how their sizes differ.</summary>
    [Fact]
    public void TheTitleGivesTheRangeOfTokensAndHowPassesWereFound()
    {
        var (code, output, error) = Moegs.Run("replay", Data("passes_step.jsonl"), "--experts", $"{Experts}");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("replay passes_step.jsonl: 4 steps of 1 to 7 token rows (13 in all) in 3 layers (JSON lines, forward passes by step), top-2 of 8 experts (JSON)", output);

        (code, output, error) = Moegs.Run("replay", Data("passes.npz"), "--layout", "tokens,layers,k", "--skip-steps", "1", "--experts", $"{Experts}");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("3 steps of 1 to 3 token rows (6 in all) in 3 layers (tokens,layers,k in each of 4 members) (the first step left out), top-2 of 8 experts (int16)", output);
    }

    /// <summary>Each layer of a multi-layer JSON-lines replay reports what that layer's lines replayed alone report, as a model of one layer and through one layer's statistics.</summary>
    [Fact]
    public void EachLayerOfAJsonLinesReplayEqualsThatLayerReplayedAlone()
    {
        var steps = TraceData.Steps("trace_ids.json");
        var (code, output, error) = Moegs.Run("replay", Data("passes_lists.jsonl"), "--experts", $"{Experts}", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        for (var layer = 0; layer < steps[0].Length; layer++)
        {
            var alone = Write($"layer{layer}.jsonl", steps.Select(step => Line(layer: 0, step[layer])));
            var (aloneCode, aloneOutput, aloneError) = Moegs.Run("replay", alone, "--experts", $"{Experts}", "--json");
            Assert.True(aloneCode == ExitCodes.Ok, aloneError);
            AssertLayerEquals(output, layer, aloneOutput);

            // Without a layer field, one layer's statistics: the same counts.
            var single = Write($"single{layer}.jsonl", steps.Select(step => Line(layer: null, step[layer])));
            var saved = Path.Combine(_folder.FullName, $"single{layer}.json");
            var (singleCode, _, singleError) = Moegs.Run("replay", single, "--experts", $"{Experts}", "--save", saved);
            Assert.True(singleCode == ExitCodes.Ok, singleError);
            AssertCountsEqual(output, layer, saved);
        }
    }

    /// <summary>Each layer of a <c>--members layers</c> replay reports what its member replayed alone reports: as an archive of one member, and as a .npy file.</summary>
    [Fact]
    public void EachLayerOfAnArchiveOfLayersEqualsThatMemberReplayedAlone()
    {
        var (code, output, error) = Moegs.Run("replay", Data("layers.npz"), "--members", "layers", "--experts", $"{Experts}", "--json");
        Assert.True(code == ExitCodes.Ok, error);
        using var archive = ZipFile.OpenRead(Data("layers.npz"));
        for (var layer = 0; layer < archive.Entries.Count; layer++)
        {
            var entry = archive.Entries[layer];
            Assert.Equal($"layer_{layer}.npy", entry.FullName);
            var one = Zip($"one{layer}.npz", (entry.FullName, Bytes(entry)));
            var (oneCode, oneOutput, oneError) = Moegs.Run("replay", one, "--members", "layers", "--experts", $"{Experts}", "--json");
            Assert.True(oneCode == ExitCodes.Ok, oneError);
            AssertLayerEquals(output, layer, oneOutput);

            var npy = Path.Combine(_folder.FullName, $"layer{layer}.npy");
            File.WriteAllBytes(npy, Bytes(entry));
            var saved = Path.Combine(_folder.FullName, $"layer{layer}.json");
            var (npyCode, _, npyError) = Moegs.Run("replay", npy, "--layout", "steps,tokens,k", "--experts", $"{Experts}", "--save", saved);
            Assert.True(npyCode == ExitCodes.Ok, npyError);
            AssertCountsEqual(output, layer, saved);
        }
    }

    /// <summary>One layer's passes of different sizes go to <see cref="RoutingStats.RecordRouting(ReadOnlySpan{int}, int, int, float, float, int)"/> with each pass's tokens.</summary>
    [Fact]
    public void OneLayersPassesOfDifferentSizesCountAsRecordedDirectly()
    {
        var steps = TraceData.Steps("trace_ids.json");
        var lines = steps.Select((step, s) => $"{{\"forward_pass\": \"p{s}\", \"topk_ids\": {JsonSerializer.Serialize(step[1])}}}");
        var saved = Path.Combine(_folder.FullName, "single.json");
        var (code, output, error) = Moegs.Run("replay", Write("single.jsonl", lines), "--experts", $"{Experts}", "--save", saved);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("4 steps of 1 to 7 token rows (13 in all), top-2 of 8 experts (JSON)", output);
        using var direct = RoutingStats.Create(new RoutingStatsOptions { Experts = Experts });
        foreach (var step in steps)
        {
            ReadOnlySpan<int> ids = [.. step[1].SelectMany(token => token)];
            direct.RecordRouting(ids, step[1].Length, 2);
        }

        using var replayed = RoutingStatsFile.Load(saved);
        Assert.Equal(direct.ExpertTokenCounts, replayed.ExpertTokenCounts);
        Assert.Equal((direct.TotalTokens, direct.TotalRoutings, direct.InvalidExpertIds), (replayed.TotalTokens, replayed.TotalRoutings, replayed.InvalidExpertIds));
        Assert.Equal(direct.ExpertUtilization, replayed.ExpertUtilization);
    }

    [Fact]
    public void MembersWhoseNumbersTheArchiveOrderDoesNotFollowAreReplayedInArchiveOrderWithAWarning()
    {
        using var archive = ZipFile.OpenRead(Data("passes.npz"));
        var reordered = Zip("reordered.npz", [.. archive.Entries.Reverse().Select(entry => (entry.FullName, Bytes(entry)))]);

        var (code, _, error) = Moegs.Run("replay", reordered, "--layout", "tokens,layers,k", "--experts", $"{Experts}", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"warning: {reordered}: replay takes the members in the archive's order, and arr_3 comes before arr_2;", error);
    }

    /// <summary>
    /// Members named as layers but read as forward passes (no --members) get a note: read with a layout alone,
    /// each layer's steps would pass for steps of a one-layer model. Said once --members is given, the note goes.
    /// </summary>
    [Theory]
    [InlineData(new string[0], true)]
    [InlineData(new[] { "--members", "steps" }, false)]
    public void MembersNamedAsLayersReadAsStepsGetANote(string[] members, bool noted)
    {
        var path = Data("layers.npz");
        var (code, _, error) = Moegs.Run(["replay", path, "--layout", "steps,tokens,k", "--experts", $"{Experts}", "--json", .. members]);

        Assert.True(code == ExitCodes.Ok, error);
        var note = $"note: {path}: its members are named as layers (layer_0, layer_1, ...) and are read as forward passes, one after another (--members steps, the default); give --members layers if member l is layer l.";
        Assert.Equal(noted, error.Split('\n').Any(line => line.TrimEnd() == note));
    }

    /// <summary>
    /// Names whose numbers do not order the members get no warning (numbers that are equal), one layer named as a
    /// layer gets no note (it is the same replay either way), and names are layers' whatever their case.
    /// </summary>
    [Fact]
    public void OnlyNamesThatHintAtAnotherReadingGetANote()
    {
        var member = Member("<i4", "2, 2", 0, 1, 2, 3);
        foreach (var (name, keys, noted) in new[]
        {
            ("equal.npz", new[] { "prefill_1", "decode_1" }, (string?)null),
            ("one.npz", ["layer_0"], null),
            ("cased.npz", ["Layer_0", "LAYERS.1"], "its members are named as layers (Layer_0, LAYERS.1, ...)"),
        })
        {
            var path = Zip(name, [.. keys.Select(key => (key + ".npy", member))]);
            var (code, _, error) = Moegs.Run("replay", path, "--experts", $"{Experts}", "--json");
            Assert.True(code == ExitCodes.Ok, error);
            Assert.DoesNotContain("warning", error);
            Assert.Equal(noted is not null, error.Contains("note: " + path + ": " + noted, StringComparison.Ordinal));
        }

        // Of layers, the warning names layers.
        var layers = Zip("layers.npz", ("layer_1.npy", member), ("layer_0.npy", member));
        var (layersCode, _, layersError) = Moegs.Run("replay", layers, "--members", "layers", "--experts", $"{Experts}", "--json");
        Assert.True(layersCode == ExitCodes.Ok, layersError);
        Assert.Contains("layer_1 comes before layer_0; if the numbers give the order of the layers, save the members in that order.", layersError);
    }

    /// <summary>
    /// The title says how the ids are laid out, in one member or in each of several, and every dtype the members
    /// hold; a one-layer replay that names no layers says why, in the archive's terms.
    /// </summary>
    [Fact]
    public void TheTitleOfAnArchiveNamesItsMembersAxesAndEveryDtype()
    {
        var mixed = Zip(
            "mixed.npz",
            ("arr_0.npy", Member("<i4", "2, 1, 2", 0, 1, 2, 3)),
            ("arr_1.npy", Member("<i8", "2, 1, 2", 3, 2, 1, 0)));
        var (code, output, error) = Moegs.Run("replay", mixed, "--layout", "layers,tokens,k", "--experts", $"{Experts}");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"in 2 layers (layers,tokens,k in each of 2 members), top-2 of {Experts} experts (int32, int64)", output);

        var one = Zip("one.npz", ("arr_0.npy", Member("<i2", "2, 1, 2", 0, 1, 2, 3)));
        (code, output, error) = Moegs.Run("replay", one, "--layout", "layers,tokens,k", "--experts", $"{Experts}");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"in 2 layers (layers,tokens,k in its one member), top-2 of {Experts} experts (int16)", output);

        var flat = Zip("flat.npz", ("arr_0.npy", Member("<i4", "2, 2", 0, 1, 2, 3)), ("arr_1.npy", Member("<i4", "1, 2", 3, 2)));
        (code, _, error) = Moegs.Run("replay", flat, "--experts", $"{Experts}", "--window-load", Path.Combine(_folder.FullName, "w.npy"));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.EndsWith($"{flat} is read without layers (tokens,k in each of 2 members: --layout names the axis that holds them; --members layers makes each member a layer).", error.Trim());
    }

    /// <summary>
    /// Every member's ids count for the largest id and for the warning on unsigned padding (255 in uint8): a signed
    /// member first does not hide them; an archive of -1 padding alone names no experts.
    /// </summary>
    [Fact]
    public void EveryMembersIdsCountForTheLargestIdAndItsPadding()
    {
        var path = Zip(
            "padded.npz",
            ("arr_0.npy", Member("<i2", "2, 2", 0, 1, 2, 3)),
            ("arr_1.npy", Member("|u1", "2, 2", 255, 1, 255, 0)),
            ("arr_2.npy", Member("|u1", "1, 2", 255, 2)));
        var (code, _, error) = Moegs.Run("replay", path, "--json");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("note: 256 experts, the largest id in padded.npz plus one; give --experts if the model has more (an expert no token reached is not in the file); 255 is the largest uint8, which -1 padding becomes when saved as uint8", error);
        Assert.Contains("warning: 3 ids replayed are 255, the largest uint8", error);

        var padding = Zip("padding.npz", ("arr_0.npy", Member("<i4", "1, 2", -1, -1)), ("arr_1.npy", Member("<i4", "1, 2", -1, -1)));
        (code, _, error) = Moegs.Run("replay", padding);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal($"{padding}: no id is 0 or more, so the file does not say how many experts there are; give --experts (1 to 4,096).", error.Trim());
    }

    /// <summary>
    /// Members of forward passes must agree on their axes and layers, whatever their order: a 2-D member after a 4-D
    /// one, members of other layers; one 3-D member without --layout is not told to be a layer of several.
    /// </summary>
    [Fact]
    public void MembersOfOtherAxesOrLayersAreOneLineNamingBoth()
    {
        var axes = Zip("axes.npz", ("arr_0.npy", Member("<i4", "2, 2", 0, 1, 2, 3)), ("arr_1.npy", Member("<i4", "1, 1, 1, 2", 0, 1)));
        AssertBadInput(axes, ["--experts", $"{Experts}"], $"{axes}[arr_1]: shape (1, 1, 1, 2) is read as [steps,layers,tokens,k], the first member arr_0 as [tokens,k]; every member holds the same axes.");

        var layers = Zip("layers.npz", ("arr_0.npy", Member("<i4", "1, 3, 2", 0, 1, 2, 3, 0, 1)), ("arr_1.npy", Member("<i4", "1, 2, 2", 0, 1, 2, 3)));
        AssertBadInput(layers, ["--layout", "tokens,layers,k", "--experts", $"{Experts}"], $"{layers}[arr_1]: shape (1, 2, 2) has 2 layers, the first member arr_0 has 3; every forward pass holds the same layers.");

        var one = Zip("one.npz", ("arr_0.npy", Member("<i4", "1, 3, 2", 0, 1, 2, 3, 0, 1)));
        var (code, _, error) = Moegs.Run("replay", one, "--experts", $"{Experts}");
        Assert.Equal(ExitCodes.Usage, code);
        Assert.EndsWith("give --layout steps,tokens,k, layers,tokens,k or tokens,layers,k.", error.Trim());
    }

    [Fact]
    public void ATruncatedArchiveIsOneLineNamingIt()
    {
        var bytes = File.ReadAllBytes(Data("passes.npz"));
        var path = Path.Combine(_folder.FullName, "cut.npz");
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);

        AssertBadInput(path, [], $"{path}: not a readable .npz archive (");
    }

    [Fact]
    public void AMemberThatIsNotNpyIsOneLineNamingIt()
    {
        var path = Zip("notes.npz", ("arr_0.npy", File.ReadAllBytes(Data("trace_ids.json"))));
        AssertBadInput(path, [], $"{path}[arr_0]: not a NumPy .npy file (no \\x93NUMPY magic).");
    }

    /// <summary>
    /// A .npy cut inside its 10-byte preamble, within its magic or after it, is called truncated, not a file without the
    /// magic, as a file and as an archive's member.
    /// </summary>
    [Theory]
    [InlineData(1, "1 byte")]
    [InlineData(6, "6 bytes")]
    [InlineData(9, "9 bytes")]
    public void AnNpyCutInsideItsPreambleIsCalledTruncated(int kept, string bytes)
    {
        var whole = Support.NpyFile.Write(Path.Combine(_folder.FullName, "whole.npy"), "<i4", "1, 2, 2", [.. new[] { 0, 1, 2, 3 }.SelectMany(BitConverter.GetBytes)]);
        var cut = File.ReadAllBytes(whole)[..kept];
        var path = Path.Combine(_folder.FullName, "cut.npy");
        File.WriteAllBytes(path, cut);
        AssertBadInput(path, [], $"{path}: truncated: the file ends inside the .npy preamble ({bytes}).");

        var archive = Zip("cut.npz", ("arr_0.npy", cut));
        AssertBadInput(archive, [], $"{archive}[arr_0]: truncated: the file ends inside the .npy preamble ({bytes}).");
    }

    /// <summary>
    /// Members named with a line break and a terminal escape are named escaped in the error and in the warnings: each
    /// stays one line, and no colour leaks into the terminal.
    /// </summary>
    [Fact]
    public void AMemberNamedWithControlCharactersIsNamedEscaped()
    {
        var notNpy = Zip("names.npz", ("arr\n0\u001b[31m.npy", File.ReadAllBytes(Data("trace_ids.json"))));
        AssertBadInput(notNpy, [], $"{notNpy}[arr\\n0\\u001b[31m]: not a NumPy .npy file");

        using var archive = ZipFile.OpenRead(Data("mixed_k.npz"));
        var member = Bytes(archive.GetEntry("arr_0.npy")!);
        var twice = Zip("twice.npz", ("arr\u001b[31m0\n.npy", member), ("arr\u001b[31m0\n.npy", member));
        var (code, _, error) = Moegs.Run(["replay", twice]);
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("2 members are named arr\\u001b[31m0\\n; replay takes each of them", error);
        Assert.DoesNotContain('\u001b', error);
    }

    [Fact]
    public void AMemberWithAnotherKIsOneLineNamingIt()
    {
        var path = Data("mixed_k.npz");
        AssertBadInput(path, [], $"{path}[arr_1]: shape (2, 3) has k = 3, the first member arr_0 has k = 2; every member holds the same k.");
    }

    [Fact]
    public void MembersOfOneLayerEachMustHaveOneShape()
    {
        using var archive = ZipFile.OpenRead(Data("passes_compressed.npz"));
        var path = Zip("uneven.npz", [.. archive.Entries.Select(entry => (entry.FullName, Bytes(entry)))]);
        AssertBadInput(path, ["--members", "layers", "--layout", "steps,tokens,k"], $"{path}[arr_1]: shape (3, 3, 2), the first member arr_0 (layer 0) has (3, 7, 2); with --members layers every member is one layer of the same steps, tokens and k.");
    }

    [Fact]
    public void AnEmptyArchiveIsOneLine()
    {
        var path = Zip("empty.npz");
        AssertBadInput(path, [], $"{path}: the archive holds no arrays; nothing to replay.");
    }

    [Theory]
    [InlineData("passes.npz", "", "passes.npz[arr_0]: shape (7, 3, 2) could be [steps, tokens, k], [layers, tokens, k] or [tokens, layers, k]; give --layout steps,tokens,k, layers,tokens,k or tokens,layers,k. If each of the archive's 4 members is one layer, give --members layers instead.")]
    [InlineData("layers.npz", "", "layers.npz[layer_0]: shape (5, 4, 2) could be [steps, tokens, k], [layers, tokens, k] or [tokens, layers, k]; give --layout steps,tokens,k, layers,tokens,k or tokens,layers,k. If each of the archive's 3 members is one layer, give --members layers instead.")]
    [InlineData("passes.npz", "--layout tokens,k", "--layout tokens,k: ")]
    [InlineData("layers.npz", "--members layers --layout layers,tokens,k", "--layout layers,tokens,k: with --members layers each member is one layer; give steps,tokens,k or tokens,k.")]
    [InlineData("layers.npz", "--members layers --layout tokens,k", "has shape (5, 4, 2), 3 dimensions, and tokens,k has 2; give steps,tokens,k.")]
    [InlineData("layers.npz", "--members rows", "--members rows: give steps (each member holds forward passes) or layers (member l holds layer l).")]
    [InlineData("passes_step.jsonl", "--layout layers,tokens,k", "--layout layers,tokens,k: ")]
    [InlineData("passes_step.jsonl", "--members layers", "--members layers: only an .npz archive has members; ")]
    [InlineData("passes_step.jsonl", "--metrics-top-experts 3", "--metrics-top-experts: shapes the metrics of --metrics-port, which was not given.")]
    public void OptionsThatDoNotFitTheTraceAreUsageErrors(string name, string arguments, string expected)
    {
        var (code, output, error) = Moegs.Run(["replay", Data(name), .. arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries)]);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.Contains(expected, error);
    }

    [Fact]
    public void TheWindowLoadOfAOneLayerTraceNamesWhatItLacks()
    {
        var path = Write("one.jsonl", ["{\"topk_ids\": [1, 2]}"]);
        var (code, _, error) = Moegs.Run("replay", path, "--window-load", Path.Combine(_folder.FullName, "w.npy"));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal($"--window-load: the window load is a model's, [layers, experts] (one router's load: --save a snapshot, which plan reads); {path} is read without layers (JSON lines, a line per layer and forward pass: no line has a layer field).", error.Trim());
    }

    /// <summary>A line's values at their edges are taken: the last layer a model holds, and request ids that are whole numbers.</summary>
    [Theory]
    [InlineData("{\"layer\": 1023, \"topk_ids\": [1, 2]}\n")]
    [InlineData("{\"topk_ids\": [1, 2], \"request_id\": 7}\n")]
    [InlineData("{\"topk_ids\": [[1, 2], [3, 4]], \"request_id\": [7, \"r8\"]}\n")]
    public void ALinesValuesAtTheirEdgesAreTaken(string text)
    {
        var path = Path.Combine(_folder.FullName, "edges.jsonl");
        File.WriteAllText(path, text);

        var (code, _, error) = Moegs.Run("replay", path, "--experts", $"{Experts}");

        Assert.True(code == ExitCodes.Ok, error);
    }

    /// <summary>A line that is not UTF-8 is named so, not as JSON that does not parse.</summary>
    [Fact]
    public void ALineThatIsNotUtf8IsNamedSo()
    {
        var path = Path.Combine(_folder.FullName, "latin1.jsonl");
        File.WriteAllBytes(path, [.. "{\"topk_ids\": [1, 2], \"request_id\": \""u8, 0xE9, .. "\"}\n"u8]);

        AssertBadInput(path, ["--experts", $"{Experts}"], $"{path}:1: not UTF-8 text; JSON lines are UTF-8.");
    }

    /// <summary>Each malformed trace is one line naming the file and line, and exit code 1.</summary>
    [Theory]
    [InlineData("{\"layer\": 0, \"topk_ids\": [1, 2]}\n{oops\n", ":2: not JSON (")]
    [InlineData("{\"topk_ids\": [[1, 2]], }\n", ":1: not JSON (The JSON object contains a trailing comma at the end, which JSON does not allow, at byte 24); a line holds one object with topk_ids.")]
    [InlineData("[1, 2]\n", ":1: a JSON array, not an object; a line holds one object with topk_ids.")]
    [InlineData("{\"layer\": 0}\n", ":1: no topk_ids (nor topk_indices, selected_experts, routed_experts, expert_ids); each line holds top-k ids.")]
    [InlineData("{\"topk_ids\": [[1, 2], [3]]}\n", ":1: topk_ids[1] has 1 id, the trace's other tokens have 2.")]
    [InlineData("{\"topk_ids\": [[1, 2]], \"gate_weights\": [[NaN, 0.5]]}\n", ":1: not JSON ('N' is an invalid start of a value, at byte 42); a line holds one object with topk_ids. NaN and Infinity, which Python's json.dumps writes for non-finite floats, are not JSON, and ids and weights are finite numbers: dump with allow_nan=False to find where they come from.")]
    [InlineData("{\n  \"total_routings\": 1\n}\n", ":1: not JSON lines: the file starts a JSON value over several lines, as a snapshot that --save writes (report reads those)")]
    [InlineData("[\n  [1, 2]\n]\n", ":1: not JSON lines: the file starts a JSON value over several lines")]
    [InlineData("{\"topk_ids\": [[1, 2]], \"gate_weights\": [[Infinity, 0.5]]}\n", ":1: not JSON ('I' is an invalid start of a value, at byte 42); a line holds one object with topk_ids. NaN and Infinity, which Python's json.dumps writes for non-finite floats, are not JSON")]
    [InlineData("{\"topk_ids\": [1, 2]}\n{\"topk_ids\": [1, 2, 3]}\n", ":2: topk_ids has 3 ids, the trace's other tokens have 2.")]
    [InlineData("{\"topk_ids\": [[1, 2], 3]}\n", ":1: topk_ids[1] is 3; in a list of tokens each token is a list of k ids")]
    [InlineData("{\"topk_ids\": [1, \"a\"]}\n", ":1: topk_ids[1] is \"a\"; ids are whole numbers, -1 for an empty slot.")]
    [InlineData("{\"topk_ids\": [1, 2.5]}\n", ":1: topk_ids[1] is 2.5; ids are whole numbers, -1 for an empty slot.")]
    [InlineData("{\"topk_ids\": []}\n", ":1: topk_ids is []; give one token's k ids, [3, 7], or a forward pass's, [[3, 7], [1, 2]].")]
    [InlineData("{\"topk_ids\": [1, 2], \"expert_ids\": [1, 2]}\n", ":1: both topk_ids and expert_ids, two names of one field; give one.")]
    [InlineData("{\"topk_ids\": [1, 2], \"topk_weights\": [0.5]}\n", ":1: topk_weights is [0.5]; give 2 weights, one per id of topk_ids.")]
    [InlineData("{\"topk_ids\": [[1, 2]], \"gate_weights\": [[0.5, 1e400]]}\n", ":1: gate_weights[0][1] is 1e400, beyond a double's range; weights are finite numbers.")]
    [InlineData("{\"topk_ids\": [1, 2], \"topk_weights\": [-1E999, 0.5]}\n", ":1: topk_weights[0] is -1E999, beyond a double's range; weights are finite numbers.")]
    [InlineData("{\"topk_ids\": [[1, 2]], \"gate_weights\": [[0.5, 0.5], [0.5, 0.5]]}\n", ":1: gate_weights has 2 tokens, topk_ids has 1;")]
    [InlineData("{\"topk_ids\": [[1, 2], [3, 4]], \"gate_weights\": [[0.5, 0.5]]}\n", ":1: gate_weights has 1 token, topk_ids has 2;")]
    [InlineData("{\"topk_ids\": [[1, 2]], \"request_id\": [\"a\", \"b\"]}\n", ":1: request_id has 2 values for 1 token;")]
    [InlineData("{\"topk_ids\": [[1, 2], [3, 4]], \"request_id\": [\"a\"]}\n", ":1: request_id has 1 value for 2 tokens;")]
    [InlineData("{\"topk_ids\": [1, 99999999999999999999]}\n", ":1: topk_ids[1] is 99999999999999999999, out of range: an id lies in [-9223372036854775808, 9223372036854775807]")]
    [InlineData("{\"topk_ids\": [-99999999999999999999, 1]}\n", ":1: topk_ids[0] is -99999999999999999999, out of range")]
    [InlineData("{\"topk_ids\": [1, 1e3]}\n", ":1: topk_ids[1] is 1e3; ids are whole numbers, written without a decimal point or exponent (1, not 1.0 or 1e0), -1 for an empty slot.")]
    [InlineData("{\"topk_ids\": [1, 1E400]}\n", ":1: topk_ids[1] is 1E400; ids are whole numbers, -1 for an empty slot.")]
    [InlineData("{\"topk_ids\": [1, 2.0]}\n", ":1: topk_ids[1] is 2.0; ids are whole numbers, written without a decimal point or exponent (1, not 1.0 or 1e0), -1 for an empty slot.")]
    [InlineData("{\"topk_ids\": [1, \"2\"]}\n", ":1: topk_ids[1] is \"2\"; ids are whole numbers, -1 for an empty slot.")]
    [InlineData("{\"layer\": 1.0, \"topk_ids\": [1, 2]}\n", ":1: layer is 1.0; give the MoE layer's index, a whole number from 0 to 1,023 (a model holds at most 1,024 layers), written without a decimal point or exponent (1, not 1.0 or 1e0).")]
    [InlineData("{\"layer\": -1, \"topk_ids\": [1, 2]}\n", ":1: layer is -1; give the MoE layer's index, a whole number from 0 to 1,023 (a model holds at most 1,024 layers).")]
    [InlineData("{\"layer\": 5000, \"topk_ids\": [1, 2]}\n", ":1: layer is 5000; give the MoE layer's index, a whole number from 0 to 1,023")]
    [InlineData("{\"layer\": \"moe.3\", \"topk_ids\": [1, 2]}\n", ":1: layer is \"moe.3\"; give the MoE layer's index")]
    [InlineData("{\"step\": 0, \"layer\": 0, \"topk_ids\": [1, 2]}\n{\"step\": 0, \"layer\": 1, \"topk_ids\": [1, 2]}\n{\"step\": 1, \"layer\": 0, \"topk_ids\": [1, 2]}\n", ":3: the forward pass of line 3 (step 1) has no tokens of layer 1; every pass holds layers 0 to 1, as the first does.")]
    [InlineData("{\"layer\": 0, \"topk_ids\": [[1, 2]]}\n{\"layer\": 1, \"topk_ids\": [[1, 2]]}\n{\"layer\": 0, \"topk_ids\": [[1, 2]]}\n{\"layer\": 2, \"topk_ids\": [[1, 2]]}\n", ":4: layer 2, but the first forward pass holds layers 0 to 1; every pass holds the same layers. Without a step or position field, each line holds all of its layer's tokens in a pass and a layer's next line starts the next pass: give lines that hold part of a pass a step or position field.")]
    [InlineData("{\"step\": 0, \"layer\": 0, \"topk_ids\": [1, 2]}\n{\"step\": 0, \"layer\": 1, \"topk_ids\": [1, 2]}\n{\"step\": 1, \"layer\": 0, \"topk_ids\": [1, 2]}\n{\"step\": 1, \"layer\": 2, \"topk_ids\": [1, 2]}\n", ":4: layer 2, but the first forward pass holds layers 0 to 1; every pass holds the same layers.")]
    [InlineData("{\"layer\": 0, \"topk_ids\": [[1, 2], [3, 4]]}\n{\"layer\": 1, \"topk_ids\": [[1, 2]]}\n", ":2: layer 1 has 1 token in the forward pass of lines 1 to 2, layer 0 has 2; every layer of a pass routes the same tokens.")]
    [InlineData("{\"step\": 0, \"topk_ids\": [1, 2]}\n{\"step\": 1, \"topk_ids\": [1, 2]}\n{\"step\": 0, \"topk_ids\": [1, 2]}\n", ":3: step 0 again, after other passes (its lines began at line 1); a forward pass's lines come together.")]
    [InlineData("{\"step\": 4294967297, \"topk_ids\": [1, 2]}\n{\"step\": 8589934594, \"topk_ids\": [1, 2]}\n{\"step\": 4294967297, \"topk_ids\": [1, 2]}\n", ":3: step 4294967297 again, after other passes (its lines began at line 1); a forward pass's lines come together.")]
    [InlineData("{\"step\": 1.5, \"topk_ids\": [1, 2]}\n", ":1: step is 1.5; give the forward pass's id, a whole number or a string.")]
    [InlineData("{\"token_pos\": 0, \"topk_ids\": [1, 2]}\n{\"token_pos\": 2, \"topk_ids\": [1, 2]}\n", ":2: token_pos 2, but the pass has 1 token before it in this forward pass; token_pos is the index of the line's first token in its pass.")]
    [InlineData("{\"layer\": 0, \"topk_ids\": [1, 2]}\n{\"topk_ids\": [1, 2]}\n", ":2: no layer; line 1 has one, so every line names its layer.")]
    [InlineData("{\"topk_ids\": [1, 2]}\n{\"step\": 3, \"topk_ids\": [1, 2]}\n", ":2: step given, but line 1 has none, so passes are told apart without it; give it on every line or on none.")]
    [InlineData("\n\n", ": no lines; a JSON-lines trace holds one object with topk_ids a line.")]
    [InlineData("{\"step\": 0, \"layer\": 3, \"topk_ids\": [1, 2]}\n{\"step\": 0, \"layer\": 5, \"topk_ids\": [3, 4]}\n{\"step\": 1, \"layer\": 7, \"topk_ids\": [5, 6]}\n{\"step\": 1, \"layer\": 3, \"topk_ids\": [1, 2]}\n", ":3: layer 7, but the first forward pass holds layers 3, 5; every pass holds the same layers.")]
    [InlineData("{\"step\": \"\\ud800\", \"topk_ids\": [1]}\n", ":1: a string or field name escapes half a UTF-16 surrogate pair (such as \\ud800 alone), which is no text; write the line's strings as text.")]
    [InlineData("{\"\\ud800\": 1, \"topk_ids\": [1]}\n", ":1: a string or field name escapes half a UTF-16 surrogate pair")]
    public void AMalformedJsonLinesTraceIsOneLineNamingTheLine(string text, string expected)
    {
        var path = Path.Combine(_folder.FullName, "bad.jsonl");
        File.WriteAllText(path, text);
        AssertBadInput(path, ["--experts", $"{Experts}"], path + expected);
    }

    /// <summary>
    /// Long string pass ids are told apart and recognized when they come back as short ones are (they are kept as
    /// a hash past 64 characters): ids alike in their first 200 characters are two passes, and an id seen before,
    /// after another pass, is refused.
    /// </summary>
    [Fact]
    public void LongStringPassIdsAreToldApartAndRecognized()
    {
        var prefix = new string('r', 200);
        var apart = Path.Combine(_folder.FullName, "apart.jsonl");
        File.WriteAllText(apart, $"{{\"step\": \"{prefix}a\", \"topk_ids\": [1, 2]}}\n{{\"step\": \"{prefix}b\", \"topk_ids\": [1, 2]}}\n");
        var (code, output, error) = Moegs.Run("replay", apart, "--experts", $"{Experts}");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("2 steps of 1 token row", output, StringComparison.Ordinal);

        var back = Path.Combine(_folder.FullName, "back.jsonl");
        File.WriteAllText(back, $"{{\"step\": \"{prefix}a\", \"topk_ids\": [1, 2]}}\n{{\"step\": \"{prefix}b\", \"topk_ids\": [1, 2]}}\n{{\"step\": \"{prefix}a\", \"topk_ids\": [1, 2]}}\n");
        (code, output, error) = Moegs.Run("replay", back, "--experts", $"{Experts}");
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.StartsWith($"{back}:3: step ", error, StringComparison.Ordinal);
        Assert.Contains(" again, after other passes (its lines began at line 1); a forward pass's lines come together.", error, StringComparison.Ordinal);
    }

    /// <summary>--layout on a JSON-lines trace is refused saying where its layers and passes come from, true of a trace whose lines name neither.</summary>
    [Fact]
    public void LayoutOnAJsonLinesTraceIsAUsageError()
    {
        var path = Write("one-layer.jsonl", [Line(null, [[1, 2]]), Line(null, [[3, 0]])]);

        var (code, output, error) = Moegs.Run("replay", path, "--layout", "tokens,k");

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Equal($"--layout tokens,k: {path} is a JSON-lines trace, whose lines give its layers and passes (by their layer, step and position fields, or their order where those are absent); --layout is for .npy and .npz files.", error.TrimEnd());
    }

    /// <summary>
    /// A hook that logs the model's own layer indices (DeepSeek-V3's MoE layers from 3, or every other
    /// layer) is read as the model's layers 0 to L − 1 in ascending order, with a note: the same figures
    /// as the trace numbered from 0. A later pass with a layer the first lacks names the first's layers.
    /// </summary>
    [Theory]
    [InlineData(3, 1, "3 to 4")]
    [InlineData(1, 2, "1, 3")]
    public void LayersNumberedAsTheModelNumbersThemAreReadInOrder(int firstLayer, int spacing, string named)
    {
        string Pass(int layer, int[][] ids) => Line(layer, ids);
        int[][][] passes = [[[1, 2], [3, 0]], [[2, 2], [1, 0]], [[3, 3], [0, 1]], [[1, 1], [2, 3]]];
        var fromZero = Write("zero.jsonl", [.. passes.Select((ids, i) => Pass(i % 2, ids))]);
        var asModel = Write("model.jsonl", [.. passes.Select((ids, i) => Pass(firstLayer + (spacing * (i % 2)), ids))]);

        var (zeroCode, zeroOut, zeroError) = Moegs.Run("replay", fromZero, "--experts", $"{Experts}", "--json");
        var (modelCode, modelOut, modelError) = Moegs.Run("replay", asModel, "--experts", $"{Experts}", "--json");

        Assert.True(zeroCode == ExitCodes.Ok, zeroError);
        Assert.True(modelCode == ExitCodes.Ok, modelError);
        Assert.DoesNotContain("read as the model's layers", zeroError);
        Assert.Contains($"note: the first forward pass holds layers {named}: read as the model's layers 0 to 1, in that order.", modelError);
        Assert.Equal(Figures(zeroOut), Figures(modelOut));

        var third = firstLayer + spacing + 1;
        var other = Write("other.jsonl", [Pass(firstLayer, [[1, 2]]), Pass(firstLayer + spacing, [[1, 2]]), Pass(firstLayer, [[1, 2]]), Pass(third, [[1, 2]])]);
        AssertBadInput(other, ["--experts", $"{Experts}"], $"{other}:4: layer {third}, but the first forward pass holds layers {named}; every pass holds the same layers.");
    }

    [Theory]
    [InlineData(new[] { 3, 4, 5 }, "3 to 5")]
    [InlineData(new[] { 0, 1, 2, 5 }, "0 to 2, 5")]
    [InlineData(new[] { 1, 3, 5, 7, 9, 11, 13 }, "1, 3, 5, …, 13 (7 layers)")]
    [InlineData(new[] { 7 }, "7")]
    public void LayerListsAreRuns(int[] layers, string expected) =>
        Assert.Equal(expected, MoeGpuStats.Cli.Input.JsonTracePasses.LayerList(layers));

    /// <summary>
    /// A log still being written ends in a line cut off without its newline: a line that starts a pass is
    /// left out alone, with a note, and the passes before it replay as the file without it does; a complete
    /// last line without a newline is read; a line that is not JSON before the end, or a whole last line
    /// that is not JSON, is refused; a cut line with no whole pass before it leaves nothing to replay.
    /// </summary>
    [Fact]
    public void ACutOffLastLineIsLeftOutWithANote()
    {
        string[] lines = [Line(0, [[1, 2], [3, 0]]), Line(1, [[2, 2], [1, 0]]), Line(0, [[3, 3], [0, 1]]), Line(1, [[1, 1], [2, 3]])];
        var whole = Write("whole.jsonl", lines);
        var cut = Path.Combine(_folder.FullName, "cut.jsonl");
        File.WriteAllText(cut, string.Join("\n", lines) + "\n" + lines[0][..17]);
        var unterminated = Path.Combine(_folder.FullName, "unterminated.jsonl");
        File.WriteAllText(unterminated, string.Join("\n", lines));

        var (wholeCode, wholeOut, wholeError) = Moegs.Run("replay", whole, "--experts", $"{Experts}", "--json");
        var (cutCode, cutOut, cutError) = Moegs.Run("replay", cut, "--experts", $"{Experts}", "--json");
        var (unterminatedCode, unterminatedOut, unterminatedError) = Moegs.Run("replay", unterminated, "--experts", $"{Experts}", "--json");

        Assert.True(wholeCode == ExitCodes.Ok, wholeError);
        Assert.True(cutCode == ExitCodes.Ok, cutError);
        Assert.True(unterminatedCode == ExitCodes.Ok, unterminatedError);
        Assert.Contains($"note: {cut}:5, the last line, is cut off (unfinished JSON, and no newline ends it, as in a log still being written): left out.", cutError);
        Assert.DoesNotContain("cut off", unterminatedError);
        Assert.Equal(Figures(wholeOut), Figures(cutOut));
        Assert.Equal(Figures(wholeOut), Figures(unterminatedOut));

        File.WriteAllText(cut, lines[0] + "\n" + lines[0][..17] + "\n" + lines[1]);
        AssertBadInput(cut, ["--experts", $"{Experts}"], $"{cut}:2: not JSON (");
        File.WriteAllText(cut, lines[0] + "\n" + "{\"topk_ids\": [[1, 2]], \"w\": NaN}");
        AssertBadInput(cut, ["--experts", $"{Experts}"], $"{cut}:2: not JSON ('N' is an invalid start of a value, at byte ");
        File.WriteAllBytes(cut, [.. System.Text.Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n{\"layer\": 0, \"request_id\": \"é")[..^1]]);
        (cutCode, cutOut, cutError) = Moegs.Run("replay", cut, "--experts", $"{Experts}", "--json");
        Assert.True(cutCode == ExitCodes.Ok, cutError);
        Assert.Contains($"note: {cut}:5, the last line, is cut off", cutError);
        Assert.Equal(Figures(wholeOut), Figures(cutOut));

        var single = Path.Combine(_folder.FullName, "single.jsonl");
        File.WriteAllText(single, "{\"topk_ids\": [[0, 1]]}\n{\"topk_ids\": [[1,");
        var (singleCode, _, singleError) = Moegs.Run("replay", single, "--experts", $"{Experts}");
        Assert.True(singleCode == ExitCodes.Ok, singleError);
        Assert.Contains($"note: {single}:2, the last line, is cut off (unfinished JSON, and no newline ends it, as in a log still being written): left out.", singleError);

        File.WriteAllText(cut, "\n" + lines[0][..17]);
        AssertBadInput(cut, ["--experts", $"{Experts}"], $"{cut}:2: the last line is cut off (unfinished JSON, and no newline ends it) and no forward pass before it is whole; nothing to replay yet.");
    }

    /// <summary>
    /// Where a pass's lines carry a step (or position) field, a cut-off last line may belong to the pass
    /// at hand, which is left out with it: the replay is the passes before it, the experts counted without
    /// --experts are those of the passes before it, and the note names its lines.
    /// </summary>
    [Fact]
    public void ACutOffLastLineTakesTheUnfinishedPassWithIt()
    {
        string Step(int step, int layer, string ids) => $"{{\"step\": {step}, \"layer\": {layer}, \"topk_ids\": {ids}}}";
        string[] first = [Step(0, 0, "[[1, 2], [3, 0]]"), Step(0, 1, "[[2, 2], [1, 0]]")];
        var before = Write("before.jsonl", first);
        var cut = Path.Combine(_folder.FullName, "cut-pass.jsonl");
        File.WriteAllText(cut, string.Join("\n", [.. first, Step(1, 0, "[[3, 7]]"), Step(1, 0, "[[0, 1]]")[..20]]));

        foreach (var experts in new[] { new[] { "--experts", $"{Experts}" }, [] })
        {
            var (beforeCode, beforeOut, beforeError) = Moegs.Run(["replay", before, "--json", .. experts]);
            var (cutCode, cutOut, cutError) = Moegs.Run(["replay", cut, "--json", .. experts]);

            Assert.True(beforeCode == ExitCodes.Ok, beforeError);
            Assert.True(cutCode == ExitCodes.Ok, cutError);
            Assert.Contains($"note: {cut}:4, the last line, is cut off (unfinished JSON, and no newline ends it, as in a log still being written): left out, with the forward pass it may belong to (line 3).", cutError);
            Assert.Equal(Figures(beforeOut), Figures(cutOut));
        }

        // Without --experts, the pass left out leaves its ids out of the count of experts too.
        Assert.Contains("note: 4 experts, the largest id in cut-pass.jsonl plus one", Moegs.Run("replay", cut, "--json").Error);
    }

    /// <summary>Lines may end in CRLF, the file may start with a byte order mark, blank lines are skipped, and unknown fields ignored.</summary>
    [Fact]
    public void WindowsLineEndsAMarkBlankLinesAndOtherFieldsAreRead()
    {
        var path = Path.Combine(_folder.FullName, "crlf.jsonl");
        File.WriteAllText(path, "\uFEFF{\"step\": 0, \"topk_ids\": [1, 2], \"ts\": 1.5}\r\n\r\n{\"step\": 1, \"topk_ids\": [[0, 3], [2, 1]], \"extra\": {\"a\": []}}\r\n", new System.Text.UTF8Encoding(false));
        var saved = Path.Combine(_folder.FullName, "crlf.json");
        var (code, output, error) = Moegs.Run("replay", path, "--experts", "4", "--save", saved);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("2 steps of 1 to 2 token rows (3 in all)", output);
        using var replayed = RoutingStatsFile.Load(saved);
        Assert.Equal([1UL, 2, 2, 1], replayed.ExpertTokenCounts);
    }

    /// <summary>
    /// A trace of more passes than one block of the pass index holds (2,048) counts as its steps recorded directly,
    /// a blank line between two layers' lines of one pass is passed over as at opening, and a warning names a step
    /// by its first line, counted with separators past 999.
    /// </summary>
    [Fact]
    public void ALongJsonLinesTraceCountsAsItsStepsRecordedDirectly()
    {
        const int Passes = 2_100, Padded = 1_500;
        var steps = Enumerable.Range(0, Passes).Select(step => Enumerable.Range(0, 2).Select(layer =>
            Enumerable.Range(0, 1 + (step % 3)).Select(token => step == Padded ? new[] { -1, -1 } : [(step + token + layer) % Experts, (step + (2 * token) + layer + 1) % Experts]).ToArray()).ToArray()).ToArray();
        var path = Write("long.jsonl", steps.SelectMany((step, s) => new[]
        {
            $"{{\"step\": {s}, \"layer\": 0, \"topk_ids\": {JsonSerializer.Serialize(step[0])}}}",
            " \t",
            $"{{\"step\": {s}, \"layer\": 1, \"topk_ids\": {JsonSerializer.Serialize(step[1])}}}",
        }));

        var (code, output, error) = Moegs.Run("replay", path, "--experts", $"{Experts}", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(Figures(Direct(steps)), Figures(output));
        Assert.Contains($"(the first is step 1,500 at line {(3 * Padded) + 1:N0})", error);
    }

    /// <summary>README's JSON-lines example: two passes of one token in two layers, said in the singular.</summary>
    [Fact]
    public void TheReadmesJsonLinesExampleReplays()
    {
        var path = Path.Combine(_folder.FullName, "trace.jsonl");
        File.WriteAllLines(path,
        [
            """{"step": 0, "layer": 0, "request_id": "r1", "topk_ids": [5, 2], "topk_weights": [0.7, 0.3]}""",
            """{"step": 0, "layer": 1, "request_id": "r1", "topk_ids": [1, 4], "topk_weights": [0.6, 0.4]}""",
            """{"step": 1, "layer": 1, "request_id": "r1", "topk_ids": [3, 4], "topk_weights": [0.8, 0.2]}""",
            """{"step": 1, "layer": 0, "request_id": "r1", "topk_ids": [2, 6], "topk_weights": [0.5, 0.5]}""",
        ]);

        var (code, output, error) = Moegs.Run("replay", path);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("replay trace.jsonl: 2 steps of 1 token row in 2 layers (JSON lines, forward passes by step), top-2 of 7 experts (JSON)", output);
    }

    /// <summary>A trace whose name says no format is read by its first bytes.</summary>
    [Fact]
    public void OtherNamesAreReadByTheirFirstBytes()
    {
        var npz = Path.Combine(_folder.FullName, "trace.bin");
        File.Copy(Data("passes_compressed.npz"), npz);
        var json = Path.Combine(_folder.FullName, "trace.log");
        File.Copy(Data("passes_lists.jsonl"), json);
        var expected = Direct(TraceData.Steps("trace_ids.json"));

        var (npzCode, npzOutput, npzError) = Moegs.Run("replay", npz, "--layout", "layers,tokens,k", "--experts", $"{Experts}", "--json");
        var (jsonCode, jsonOutput, jsonError) = Moegs.Run("replay", json, "--experts", $"{Experts}", "--json");

        Assert.True(npzCode == ExitCodes.Ok, npzError);
        Assert.True(jsonCode == ExitCodes.Ok, jsonError);
        Assert.Equal(Figures(expected), Figures(npzOutput));
        Assert.Equal(Figures(expected), Figures(jsonOutput));

        var text = Path.Combine(_folder.FullName, "notes.txt");
        File.WriteAllText(text, "hello");
        AssertBadInput(text, [], $"{text}: neither its name nor its first bytes say a format replay reads; give a .npy, .npz, .jsonl or .ndjson file.");
    }

    /// <summary>
    /// A .npy or zip magic in the first bytes decides over the name, as np.load reads a file: an archive or an
    /// array named as JSON lines (or an archive named .npy) replays as what it holds, not as text.
    /// </summary>
    [Theory]
    [InlineData("trace.jsonl")]
    [InlineData("trace.npy")]
    public void AMagicDecidesOverTheName(string name)
    {
        var archive = Path.Combine(_folder.FullName, name);
        File.Copy(Data("passes_compressed.npz"), archive);
        var ids = ModelTrace.Ids(Steps, Layers, Tokens, seed: 5);
        var array = WriteInt32("array.jsonl", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids);
        var named = WriteInt32("array.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", ids);

        var (code, output, error) = Moegs.Run("replay", archive, "--layout", "layers,tokens,k", "--experts", $"{Experts}", "--json");
        var (arrayCode, arrayOutput, arrayError) = Moegs.Run("replay", array, "--experts", $"{Experts}", "--json");
        var (_, namedOutput, _) = Moegs.Run("replay", named, "--experts", $"{Experts}", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(Figures(Direct(TraceData.Steps("trace_ids.json"))), Figures(output));
        Assert.True(arrayCode == ExitCodes.Ok, arrayError);
        Assert.Equal(Figures(namedOutput), Figures(arrayOutput));
    }

    /// <summary>
    /// A model's <c>--json</c> report without its <c>step_time</c>, the run's own times, which differ from
    /// run to run: the figures that two records of the same ids share.
    /// </summary>
    private static string Figures(string report)
    {
        var json = JsonNode.Parse(report)!.AsObject();
        json.Remove("step_time");
        return json.ToJsonString();
    }

    /// <summary>What <c>replay --json</c> prints for <paramref name="steps"/> recorded directly through <see cref="ModelRoutingStats.RecordStep(ReadOnlySpan{int}, int, int, long, ReadOnlySpan{float}, ReadOnlySpan{float}, long)"/>, each with its tokens.</summary>
    private static string Direct(int[][][][] steps)
    {
        using var stats = ModelRoutingStats.Create(new ModelRoutingStatsOptions { Layers = steps[0].Length, Experts = Experts });
        foreach (var step in steps)
        {
            ReadOnlySpan<int> ids = [.. step.SelectMany(layer => layer.SelectMany(token => token))];
            stats.RecordStep(ids, step[0].Length, step[0][0].Length);
        }

        using var output = new StringWriter(CultureInfo.InvariantCulture);
        ModelReport.WriteJson(output, stats.Summary(), ModelCounts.Of(stats), Experts);
        return output.ToString();
    }

    /// <summary>Layer <paramref name="layer"/> of a model's JSON report equals layer 0 of a one-layer model's, in the window and since the start.</summary>
    private static void AssertLayerEquals(string model, int layer, string alone)
    {
        var whole = JsonNode.Parse(model)!;
        var one = JsonNode.Parse(alone)!;
        Assert.Equal(1, one["layers"]!.GetValue<int>());
        foreach (var part in new[] { "window", "since_start" })
        {
            var expected = whole[part]!["per_layer"]![layer]!.AsObject();
            var got = one[part]!["per_layer"]![0]!.AsObject();
            expected.Remove("layer");
            got.Remove("layer");
            Assert.Equal(expected.ToJsonString(), got.ToJsonString());
        }
    }

    /// <summary>Layer <paramref name="layer"/> of a model's JSON report agrees with a one-layer snapshot's counts.</summary>
    private static void AssertCountsEqual(string model, int layer, string saved)
    {
        var expected = JsonNode.Parse(model)!["since_start"]!["per_layer"]![layer]!;
        using var single = RoutingStatsFile.Load(saved);
        var counts = single.ExpertTokenCounts;
        Assert.Equal(expected["load"]!.GetValue<ulong>(), counts.Aggregate(0UL, (sum, count) => sum + count));
        Assert.Equal(expected["max_load"]!.GetValue<ulong>(), counts.Max());
        Assert.Equal(expected["hottest_expert"]!.GetValue<int>(), counts.ToList().LastIndexOf(counts.Max()));
        Assert.Equal(expected["dead_experts"]!.GetValue<int>(), counts.Count(count => count == 0));
        // Gini from its definition (the mean absolute difference over twice the mean), the top tenth's share from a sort.
        var pairs = counts.Sum(a => counts.Sum(b => Math.Abs((double)a - b)));
        Assert.Equal(pairs / (2.0 * counts.Count * counts.Count * counts.Average(c => (double)c)), expected["gini_coefficient"]!.GetValue<double>(), 12);
        var top = counts.OrderDescending().Take((counts.Count + 9) / 10).Aggregate(0UL, (sum, count) => sum + count);
        Assert.Equal(top / (double)counts.Aggregate(0UL, (sum, count) => sum + count), expected["top10_percent_share"]!.GetValue<double>(), 15);
    }

    private static void AssertBadInput(string path, string[] arguments, string expected)
    {
        var (code, output, error) = Moegs.Run(["replay", path, .. arguments]);

        Assert.True(code == ExitCodes.BadInput, $"exit code {code}: {error}");
        Assert.Empty(output);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.StartsWith(expected, error.Trim());
    }

    private static byte[] Bytes(ZipArchiveEntry entry)
    {
        using var stream = entry.Open();
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>One JSON line of one layer's pass, <c>[tokens][k]</c>, with or without a layer field.</summary>
    private static string Line(int? layer, int[][] tokens) =>
        layer is { } l ? $"{{\"layer\": {l}, \"topk_ids\": {JsonSerializer.Serialize(tokens)}}}" : $"{{\"topk_ids\": {JsonSerializer.Serialize(tokens)}}}";

    private string Write(string name, IEnumerable<string> lines)
    {
        var path = Path.Combine(_folder.FullName, name);
        File.WriteAllLines(path, lines);
        return path;
    }

    /// <summary>A member of <paramref name="descr"/> ids of <paramref name="shape"/>, as np.savez writes it.</summary>
    private static byte[] Member(string descr, string shape, params long[] ids)
    {
        var size = int.Parse(descr[2..], CultureInfo.InvariantCulture);
        return Support.NpyFile.Bytes(descr, shape, [.. ids.SelectMany(id => BitConverter.GetBytes(id).Take(size))]);
    }

    private string Zip(string name, params (string Name, byte[] Bytes)[] members)
    {
        var path = Path.Combine(_folder.FullName, name);
        using var archive = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (member, bytes) in members)
        {
            using var stream = archive.CreateEntry(member).Open();
            stream.Write(bytes);
        }

        return path;
    }
}
