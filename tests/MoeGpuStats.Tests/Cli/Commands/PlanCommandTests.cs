using System.Text.Json;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Commands;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary><c>moegs plan</c> in-process: the published example from a .npy and from JSON, the JSON's shape, the errors.</summary>
public sealed class PlanCommandTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-plan-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>The plan's heading names the load file, which may hold a line break or a terminal escape: one line, as written.</summary>
    [Fact]
    public void AHeadingNamingAFileWithALineBreakIsOneLineShownAsWritten()
    {
        var npy = WriteNpy("load\u001b[31m\nfile.npy", "<i8", EplbExample.PublishedLoads);

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", "16", "--gpus", "8");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.StartsWith($"plan {npy.Replace("\u001b", @"\u001b", StringComparison.Ordinal).Replace("\n", @"\n", StringComparison.Ordinal)}: 2 layers of 12 experts", output);
        Assert.DoesNotContain('\u001b', output);
    }

    /// <summary>
    /// A plan's JSON of several MiB, passed on in chunks as it is written, is one whole document: every layer's rows
    /// complete, each slot's expert where the placement puts it.
    /// </summary>
    [Fact]
    public void AJsonPlanOfManyChunksIsWhole()
    {
        const int Layers = 64;
        const int Experts = 4096;
        var loads = new long[Layers, Experts];
        for (var l = 0; l < Layers; l++)
        {
            for (var e = 0; e < Experts; e++)
            {
                loads[l, e] = 1 + ((l * 7919) + (e * 104729)) % 1000;
            }
        }

        var npy = WriteNpy("large.npy", "<i8", loads);

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", $"{Experts}", "--gpus", "8", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.True(output.Length > 3 << 20, $"the JSON is {output.Length:N0} characters, less than three chunks");
        using var plan = JsonDocument.Parse(output);
        var rows = plan.RootElement.GetProperty("physical_to_logical").EnumerateArray().ToArray();
        Assert.Equal(Layers, rows.Length);
        Assert.All(rows, row => Assert.Equal(Enumerable.Range(0, Experts), row.EnumerateArray().Select(slot => slot.GetInt32()).Order()));
        Assert.Equal(Layers, plan.RootElement.GetProperty("logical_to_physical").GetArrayLength());
        Assert.Equal(Layers, plan.RootElement.GetProperty("replica_counts").GetArrayLength());
    }

    /// <summary>One expert on two GPUs has no placement without replicas to compare: said in the singular.</summary>
    [Fact]
    public void OneExpertOnTwoGpusHasNoBeforeInTheSingular()
    {
        var npy = WriteNpy("one.npy", "<i8", new long[,] { { 5 }, { 3 } });

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", "2", "--gpus", "2");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("before: n/a (2 GPUs do not divide 1 expert, so", output);
    }

    [Fact]
    public void ThePublishedExampleFromANpyPrintsThePublishedPlacementAndBalancedness()
    {
        var npy = WriteNpy("load.npy", "<i8", EplbExample.PublishedLoads);

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", "16", "--groups", "4", "--nodes", "2", "--gpus", "8");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Empty(error);
        Assert.Contains("2 layers of 12 experts, 16 slots per layer on 8 GPUs (2 each) in 2 nodes, 4 groups", output);
        Assert.Contains("policy: hierarchical", output);
        Assert.Contains("before: n/a (8 GPUs do not divide 12 experts", output);
        Assert.Contains("    node 0: [5 6] [5 7] [8 4] [3 4]", output);
        Assert.Contains("    node 1: [10 9] [10 2] [0 1] [11 1]", output);
        Assert.Contains("    node 0: [7 10] [6 8] [6 11] [8 9]", output);
        Assert.Contains("    node 1: [2 4] [5 1] [5 0] [3 1]", output);
        Assert.Contains("replicated: 1 x2, 4 x2, 5 x2, 10 x2", output);
        var after = ExpertPlacement_Balancedness();
        Assert.Contains(FormattableString.Invariant($"      0     n/a   {after[0]:0.000}"), output);
        Assert.Contains(FormattableString.Invariant($"      1     n/a   {after[1]:0.000}"), output);
    }

    /// <summary>
    /// The report's "x2 on 1 GPU" counts the GPUs each replicated expert's slots sit on, as the placement lines above it
    /// show them: a skewed load whose packing by load puts replicas of one expert together on a GPU, counted here apart.
    /// </summary>
    [Fact]
    public void AReplicatedExpertsGpusAreThoseItsSlotsSitOn()
    {
        var random = new Random(5);
        var loads = new long[3, 16];
        for (var l = 0; l < 3; l++)
        {
            for (var e = 0; e < 16; e++)
            {
                loads[l, e] = e < 2 ? 10_000 + random.Next(1_000) : random.Next(1, 50);
            }
        }

        var (code, output, error) = Moegs.Run("plan", WriteNpy("skewed.npy", "<i8", loads), "--replicas", "32", "--gpus", "4");
        Assert.True(code == ExitCodes.Ok, error);

        var lines = output.Split('\n');
        var checkedExperts = 0;
        var sharedGpus = 0;
        for (var l = 0; l < 3; l++)
        {
            var at = Array.IndexOf(lines, $"  layer {l}:");
            var gpus = System.Text.RegularExpressions.Regex.Matches(lines[at + 1], @"\[([^\]]*)\]").Select(match => match.Groups[1].Value.Split(' ').Select(int.Parse).ToArray()).ToArray();
            Assert.Equal(4, gpus.Length);
            foreach (var entry in lines[at + 2].Split(':')[1].Split(',', StringSplitOptions.TrimEntries))
            {
                var parts = entry.Split(' ');
                var expert = int.Parse(parts[0]);
                var replicas = int.Parse(parts[1].TrimStart('x'));
                var holding = gpus.Count(slots => slots.Contains(expert));
                Assert.Equal(replicas, gpus.Sum(slots => slots.Count(slot => slot == expert)));
                Assert.Equal(holding < replicas ? $"{expert} x{replicas} on {holding} GPU{(holding == 1 ? "" : "s")}" : $"{expert} x{replicas}", entry);
                sharedGpus += holding < replicas ? 1 : 0;
                checkedExperts++;
            }
        }

        Assert.True(checkedExperts >= 6, output);
        Assert.True(sharedGpus > 0, output);
    }

    /// <summary>Each count option is taken at its least, 1, given as well as by default.</summary>
    [Theory]
    [InlineData("--groups", "in 1 node, 1 group")]
    [InlineData("--nodes", "in 1 node, 1 group")]
    public void ACountOptionOfOneIsTaken(string option, string expected)
    {
        var npy = WriteNpy("load.npy", "<i8", EplbExample.PublishedLoads);

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", "16", "--gpus", "8", option, "1");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains(expected, output.Split('\n')[0]);
    }

    /// <summary>
    /// The note on replicas sharing a GPU counts the replicated experts that have them, not every replicated expert,
    /// and says "has" of one; with a slot per expert nothing is replicated and there is no note. One layer's report
    /// has no min and mean rows.
    /// </summary>
    [Theory]
    [InlineData(24, "    replicated: 0 x8 on 4 GPUs, 1 x2", "note: 1 replicated expert (over all layers) has two or more replicas on one GPU")]
    [InlineData(16, "    replicated: none", null)]
    public void TheNoteOnReplicasSharingAGpuCountsTheExpertsThatHaveThem(int replicas, string replicated, string? note)
    {
        long[,] loads = { { 5_000, 1_200, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100 } };

        var (code, output, error) = Moegs.Run("plan", WriteNpy("two-hot.npy", "<i8", loads), "--replicas", $"{replicas}", "--gpus", "4");

        Assert.True(code == ExitCodes.Ok, error);
        var lines = output.Split('\n');
        Assert.Contains(replicated, lines);
        Assert.Equal(note, lines.SingleOrDefault(line => line.StartsWith("note:", StringComparison.Ordinal))?.Split(" (\"on N GPUs\"")[0]);
        Assert.DoesNotContain(lines, line => line.StartsWith("    min ", StringComparison.Ordinal) || line.StartsWith("   mean ", StringComparison.Ordinal));
    }

    [Fact]
    public void JsonGivesPerLayerMapsCountsAndBalancednessAndMatchesTheNpyPlan()
    {
        var json = Path.Combine(_folder.FullName, "load.json");
        File.WriteAllText(json, "[[90,132,40,61,104,165,39,4,73,56,183,86],\n [20,107,104,64,19,197,187,157,172,86,16,27]]");

        var (code, output, error) = Moegs.Run("plan", json, "--replicas", "16", "--groups", "4", "--nodes", "2", "--gpus", "4", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Empty(error);
        Assert.Single(output.TrimEnd().Split('\n'));
        using var document = JsonDocument.Parse(output);
        var root = document.RootElement;
        Assert.Equal("hierarchical", root.GetProperty("policy").GetString());
        Assert.Equal(2, root.GetProperty("layers").GetInt32());
        Assert.Equal(16, root.GetProperty("physical_experts").GetInt32());
        var phy2log = root.GetProperty("physical_to_logical");
        var log2phy = root.GetProperty("logical_to_physical");
        var counts = root.GetProperty("replica_counts");
        Assert.Equal(2, phy2log.GetArrayLength());
        var widest = counts.EnumerateArray().SelectMany(c => c.EnumerateArray()).Max(c => c.GetInt32());
        for (var layer = 0; layer < 2; layer++)
        {
            var map = phy2log[layer].EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var count = counts[layer].EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(16, map.Length);
            Assert.Equal(12, count.Length);
            Assert.Equal(16, count.Sum());
            Assert.Equal(12, log2phy[layer].GetArrayLength());
            for (var e = 0; e < 12; e++)
            {
                var row = log2phy[layer][e].EnumerateArray().Select(s => s.GetInt32()).ToArray();
                Assert.Equal(widest, row.Length);
                Assert.All(row.Skip(count[e]), s => Assert.Equal(-1, s));
                var slots = row.Take(count[e]).ToArray();
                Assert.All(slots, s => Assert.Equal(e, map[s]));
            }
        }

        // Four GPUs divide twelve experts, so there is a placement without replicas to compare with.
        Assert.Equal(2, root.GetProperty("balancedness_before").GetArrayLength());
        Assert.Equal(258.25 / 330, root.GetProperty("balancedness_before")[0].GetDouble(), 12);
        Assert.All(root.GetProperty("balancedness_after").EnumerateArray(), b => Assert.InRange(b.GetDouble(), 0.5, 1.0));

        var npy = WriteNpy("load.npy", "<i4", EplbExample.PublishedLoads);
        var fromNpy = Moegs.Run("plan", npy, "--replicas", "16", "--groups", "4", "--nodes", "2", "--gpus", "4", "--json");
        Assert.Equal(output, fromNpy.Out);

        // uint64, as numpy.save(model.window_load()) writes the Python model's window load.
        var unsigned = WriteNpy("load-u8.npy", "<u8", EplbExample.PublishedLoads);
        var fromUnsigned = Moegs.Run("plan", unsigned, "--replicas", "16", "--groups", "4", "--nodes", "2", "--gpus", "4", "--json");
        Assert.Equal(output, fromUnsigned.Out);
    }

    /// <summary>
    /// --current judges "before" on the placement serving now: a plan's own --json gives its "after" as
    /// "before", a bare [layers][slots] array on --gpus likewise; a map that leaves an expert without a slot
    /// is refused naming the file, the field and the slot.
    /// </summary>
    [Fact]
    public void CurrentJudgesBeforeOnTheDeployedPlacement()
    {
        var npy = WriteNpy("load.npy", "<i8", EplbExample.PublishedLoads);
        string[] options = ["--replicas", "16", "--groups", "4", "--nodes", "2", "--gpus", "8"];
        var (code, planned, error) = Moegs.Run(["plan", npy, .. options, "--json"]);
        Assert.True(code == ExitCodes.Ok, error);
        var previous = Path.Combine(_folder.FullName, "plan.json");
        File.WriteAllText(previous, planned);
        var bare = Path.Combine(_folder.FullName, "bare.json");
        File.WriteAllText(bare, JsonSerializer.Serialize(EplbExample.PublishedPhy2Log));

        foreach (var current in new[] { previous, bare })
        {
            (code, var output, error) = Moegs.Run(["plan", npy, .. options, "--json", "--current", current]);
            Assert.True(code == ExitCodes.Ok, error);
            using var again = JsonDocument.Parse(output);
            using var first = JsonDocument.Parse(planned);
            Assert.Equal(
                first.RootElement.GetProperty("balancedness_after").EnumerateArray().Select(b => b.GetDouble()),
                again.RootElement.GetProperty("balancedness_before").EnumerateArray().Select(b => b.GetDouble()));
        }

        (code, var text, error) = Moegs.Run(["plan", npy, .. options, "--current", bare]);
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("  before: the current placement, bare.json: 16 slots per layer on 8 GPUs", text);

        var missing = Path.Combine(_folder.FullName, "missing.json");
        File.WriteAllText(missing, "[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3]]");
        (code, _, error) = Moegs.Run(["plan", npy, .. options, "--current", missing]);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"--current {missing} (against {npy}: 2 layers of 12 experts): physical_to_logical[0] gives expert 11 no slot; every expert from 0 to 11 needs one, or its tokens have nowhere to go.", error.TrimEnd());
    }

    /// <summary>
    /// --load-per-slot: a load recorded per slot of the --current placement plans as its experts' summed load
    /// does, and before is each GPU's own slots' load as recorded (not its experts' load split evenly among
    /// replicas); without --current, or with loads of another width, it is refused in one line.
    /// </summary>
    [Fact]
    public void LoadPerSlotSumsTheSlotsThroughTheCurrentPlacement()
    {
        var logical = WriteNpy("load.npy", "<i8", EplbExample.PublishedLoads);
        var slotLoads = EplbExample.PublishedSlotLoads();
        var perSlot = WriteNpy("slots.npy", "<i8", slotLoads);
        var bare = Path.Combine(_folder.FullName, "bare.json");
        File.WriteAllText(bare, JsonSerializer.Serialize(EplbExample.PublishedPhy2Log));
        string[] options = ["--replicas", "16", "--groups", "4", "--nodes", "2", "--gpus", "8", "--json"];

        var (code, fromSlots, error) = Moegs.Run(["plan", perSlot, .. options, "--current", bare, "--load-per-slot"]);
        Assert.True(code == ExitCodes.Ok, error);
        var (_, fromExperts, _) = Moegs.Run(["plan", logical, .. options, "--current", bare]);
        using var slotsPlan = JsonDocument.Parse(fromSlots);
        using var expertsPlan = JsonDocument.Parse(fromExperts);
        Assert.Equal(expertsPlan.RootElement.GetProperty("physical_to_logical").ToString(), slotsPlan.RootElement.GetProperty("physical_to_logical").ToString());
        Assert.Equal(expertsPlan.RootElement.GetProperty("balancedness_after").ToString(), slotsPlan.RootElement.GetProperty("balancedness_after").ToString());

        // Each GPU holds two neighbouring slots: its load is theirs, as recorded.
        var measured = Enumerable.Range(0, 2).Select(layer =>
        {
            var gpu = Enumerable.Range(0, 8).Select(g => (double)(slotLoads[layer, 2 * g] + slotLoads[layer, (2 * g) + 1])).ToArray();
            return gpu.Average() / gpu.Max();
        });
        Assert.Equal(measured, slotsPlan.RootElement.GetProperty("balancedness_before").EnumerateArray().Select(b => b.GetDouble()));
        Assert.NotEqual(
            expertsPlan.RootElement.GetProperty("balancedness_before")[0].GetDouble(),
            slotsPlan.RootElement.GetProperty("balancedness_before")[0].GetDouble());

        (code, var text, error) = Moegs.Run(["plan", perSlot, .. options[..^1], "--current", bare, "--load-per-slot"]);
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("  before: the current placement, bare.json, as recorded: the load of each GPU's own 2 slots", text);
        Assert.Contains("2 layers of 12 experts, 16 slots per layer", text);

        (code, _, error) = Moegs.Run(["plan", perSlot, .. options, "--load-per-slot"]);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal("--load-per-slot: the slots are those of the placement the load was recorded under; give it with --current.", error.TrimEnd());

        (code, _, error) = Moegs.Run(["plan", logical, .. options, "--current", bare, "--load-per-slot"]);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"--current {bare} (against {logical}: 2 layers of 12 slots, --load-per-slot): physical_to_logical[0] has 16 slots but the loads have 12 per layer; give the placement the loads were recorded under.", error.TrimEnd());

        // The GPUs of a placement written by plan --json are its own, not --gpus: a refusal says whose they are.
        var onThree = Path.Combine(_folder.FullName, "three.json");
        File.WriteAllText(onThree, JsonSerializer.Serialize(new { physical_to_logical = EplbExample.PublishedPhy2Log, gpus = 3 }));
        (code, _, error) = Moegs.Run(["plan", perSlot, .. options, "--current", onThree, "--load-per-slot"]);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"--current {onThree} (against {perSlot}: 2 layers of 16 slots, --load-per-slot): 16 slots do not divide among 3 GPUs (the file's gpus field); every GPU holds as many.", error.TrimEnd());
        (code, _, error) = Moegs.Run(["plan", perSlot, "--replicas", "12", "--gpus", "3", "--current", bare, "--load-per-slot"]);
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"--current {bare} (against {perSlot}: 2 layers of 16 slots, --load-per-slot): 16 slots do not divide among 3 GPUs (--gpus); every GPU holds as many.", error.TrimEnd());
    }

    [Theory]
    [InlineData("object.json", "{\"gpus\": 8}", "a JSON object without physical_to_logical")]
    [InlineData("rows-twice.json", "{\"physical_to_logical\": [[0]], \"physical_to_logical\": [[1]]}", "physical_to_logical is given twice; plan --json gives each field once.")]
    [InlineData("gpus-twice.json", "{\"gpus\": 8, \"physical_to_logical\": [[0]], \"gpus\": 4}", "gpus is given twice; plan --json gives each field once.")]
    [InlineData("gpus.json", "{\"physical_to_logical\": [[0]], \"gpus\": 0}", "gpus is 0; a placement's GPUs are a whole number from 1 to 2,147,483,647.")]
    [InlineData("flat.json", "[0, 1, 2]", "layer 0 of physical_to_logical is a number, not an array of slots.")]
    [InlineData("text.json", "[[0, \"one\"]]", "layer 0, slot 1 is \"one\"; a slot holds an expert's index.")]
    [InlineData("empty.json", "[]", "physical_to_logical must be a non-empty array")]
    [InlineData("garbage.json", "not json", "not JSON")]
    [InlineData("late.json", "{\"physical_to_logical\": [[\"one\"]], \"x\": [1, }", "not JSON")]
    [InlineData("gpus-text.json", "{\"physical_to_logical\": [[0]], \"gpus\": \"8\"}", "gpus is \"8\"; a placement's GPUs are a whole number from 1 to 2,147,483,647.")]
    [InlineData("snapshot.json", "{\"physical_to_logical\": [[0]], \"window_load\": [[1]]}", "a snapshot of routing statistics, not a placement")]
    [InlineData("row.json", "[[0], {\"a\": 1}]", "layer 1 of physical_to_logical is an object, not an array of slots.")]
    [InlineData("deep.json", "[[0, [1, 2]]]", "layer 0, slot 1 is [1, 2]; a slot holds an expert's index.")]
    [InlineData("marked.json", "\uFEFF[[0], \"one\"]", "layer 1 of physical_to_logical is a string, not an array of slots.")]
    [InlineData("surrogate.json", "{\"\\ud800\": 1, \"physical_to_logical\": [[0, \"x\"]]}", "layer 0, slot 1 is \"x\"; a slot holds an expert's index.")]
    [InlineData("surrogate-gpus.json", "{\"\\ud800\": \"eight\", \"physical_to_logical\": [[0, \"x\"]]}", "layer 0, slot 1 is \"x\"; a slot holds an expert's index.")]
    [InlineData("layer-snapshot.json", "{\"physical_to_logical\": [[0]], \"expert_token_counts\": [1]}", "a snapshot of routing statistics, not a placement")]
    [InlineData("gpus-fraction.json", "{\"physical_to_logical\": [[0]], \"gpus\": 8.5}", "gpus is 8.5; a placement's GPUs are a whole number from 1 to 2,147,483,647.")]
    [InlineData("gpus-huge.json", "{\"physical_to_logical\": [[0]], \"gpus\": 1099511627776}", "gpus is 1099511627776; a placement's GPUs are a whole number from 1 to 2,147,483,647.")]
    public void ACurrentPlacementThatCannotBeReadIsOneLineNamingTheFile(string name, string content, string expected)
    {
        var npy = WriteNpy("load.npy", "<i8", EplbExample.PublishedLoads);
        var current = Path.Combine(_folder.FullName, name);
        File.WriteAllText(current, content);

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", "16", "--gpus", "8", "--current", current);

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.StartsWith($"--current {current}: ", error);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    /// <summary>A uint64 load past long's range is refused naming it, not wrapped negative or clamped.</summary>
    [Fact]
    public void AUnsignedLoadPastInt64IsRefusedNamingIt()
    {
        var data = new[] { 5UL, (ulong)long.MaxValue + 1, 7UL }.SelectMany(BitConverter.GetBytes).ToArray();
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "huge.npy"), "<u8", "1, 3", data);

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", "3", "--gpus", "1");

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{npy}: the load of expert 1 in layer 0 is past 9,223,372,036,854,775,807, the largest a plan reads.", error.TrimEnd());
    }

    [Fact]
    public void TheEightGpuExampleInJsonIsThePublishedMapWithNoBalancednessBefore()
    {
        var npy = WriteNpy("load.npy", "<i8", EplbExample.PublishedLoads);

        var (code, output, _) = Moegs.Run("plan", npy, "--replicas", "16", "--groups", "4", "--nodes", "2", "--gpus", "8", "--json");

        Assert.Equal(ExitCodes.Ok, code);
        using var document = JsonDocument.Parse(output);
        var phy2log = document.RootElement.GetProperty("physical_to_logical");
        Assert.Equal(EplbExample.PublishedPhy2Log[0], phy2log[0].EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(EplbExample.PublishedPhy2Log[1], phy2log[1].EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(JsonValueKind.Null, document.RootElement.GetProperty("balancedness_before").ValueKind);
    }

    [Fact]
    public void ASnapshotAOneDimensionalNpyAndAFlatJsonArrayAreEachOneLayer()
    {
        var snapshot = Path.Combine(_folder.FullName, "run.json");
        using (var stats = new RoutingStats(new RoutingStatsOptions { Experts = 8 }))
        {
            stats.RecordRouting([0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7], 14, 1);
            RoutingStatsFile.Save(stats, snapshot);
        }

        var one = WriteNpy("one.npy", "<i8", new long[,] { { 6, 2, 1, 1, 1, 1, 1, 1 } }, shape: "8,");
        var withMark = Path.Combine(_folder.FullName, "one.json");
        File.WriteAllText(withMark, "[6, 2, 1, 1, 1, 1, 1, 1]", new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
        var fromSnapshot = Moegs.Run("plan", snapshot, "--replicas", "12", "--gpus", "4", "--json");
        var fromNpy = Moegs.Run("plan", one, "--replicas", "12", "--gpus", "4", "--json");
        var fromJson = Moegs.Run("plan", withMark, "--replicas", "12", "--gpus", "4", "--json");

        Assert.True(fromSnapshot.Code == ExitCodes.Ok, fromSnapshot.Error);
        Assert.Equal(ExitCodes.Ok, fromNpy.Code);
        Assert.Equal(fromNpy.Out, fromSnapshot.Out);
        Assert.Equal(fromNpy.Out, fromJson.Out);
        using var document = JsonDocument.Parse(fromSnapshot.Out);
        Assert.Equal(1, document.RootElement.GetProperty("layers").GetInt32());
        Assert.Equal(4, document.RootElement.GetProperty("replica_counts")[0][0].GetInt32());
    }

    /// <summary>
    /// The load line says which of a snapshot's loads was planned: one layer's tokens per expert since the start, a
    /// model's window load over all its steps or over the newest of them.
    /// </summary>
    [Fact]
    public void TheLoadLineSaysWhichOfASnapshotsLoadsWasPlanned()
    {
        var layer = Path.Combine(_folder.FullName, "layer.json");
        using (var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 }))
        {
            stats.RecordRouting([0, 1, 2, 3], tokens: 4, topK: 1);
            stats.RecordRouting([0, 0, 1, 2], tokens: 4, topK: 1);
            RoutingStatsFile.Save(stats, layer);
        }

        string Model(string name, int window)
        {
            var path = Path.Combine(_folder.FullName, name);
            using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = window });
            for (var step = 0; step < 3; step++)
            {
                model.RecordStep([0, 1, 2, step, 3, 2, 1, step], tokens: 4, topK: 1);
            }

            RoutingStatsFile.Save(model, path);
            return path;
        }

        foreach (var (path, expected) in new[]
        {
            (layer, "load: the snapshot's tokens per expert since the start, over 2 batches"),
            (Model("whole.json", window: 5), "load: the snapshot's window load: all 3 steps"),
            (Model("newest.json", window: 2), "load: the snapshot's window load: the newest 2 of 3 steps"),
        })
        {
            var (code, output, error) = Moegs.Run("plan", path, "--replicas", "4", "--gpus", "2");
            Assert.True(code == ExitCodes.Ok, error);
            Assert.Contains(expected, output.Split('\n'));
        }
    }

    [Fact]
    public void ASnapshotOfNoBatchHasNoLoadsToPlace()
    {
        var snapshot = Path.Combine(_folder.FullName, "empty-run.json");
        using (var stats = new RoutingStats())
        {
            RoutingStatsFile.Save(stats, snapshot);
        }

        var (code, output, error) = Moegs.Run("plan", snapshot, "--replicas", "4", "--gpus", "2");

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{snapshot}: no loads (a snapshot with no batch): nothing to place.", error.TrimEnd());

        // A model has its experts from the start: before its first step its window load is all zeros, which every placement balances.
        var model = Path.Combine(_folder.FullName, "empty-model.json");
        using (var fresh = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 }))
        {
            File.WriteAllText(model, System.Text.Json.JsonSerializer.Serialize(fresh));
        }

        (code, output, error) = Moegs.Run("plan", model, "--replicas", "6", "--gpus", "2");
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{model}: every load is 0 (a snapshot before its first step, or a window of steps without tokens): nothing to balance.", error.TrimEnd());
    }

    [Theory]
    [InlineData("--replicas 20 --gpus 8", "--replicas 20: 20 slots do not divide among --gpus 8 GPUs; give a multiple of 8.")]
    [InlineData("--replicas 16 --gpus 8 --nodes 3", "--nodes 3: 3 nodes do not divide --gpus 8; give a divisor of 8.")]
    [InlineData("--replicas 8 --gpus 8", "--replicas 8: LOAD has 12 experts and each needs a slot; give at least 12 (a multiple of --gpus 8).")]
    [InlineData("--replicas 16 --gpus 8 --groups 5", "--groups 5: 5 groups do not divide the 12 experts of LOAD; give a divisor of 12 (1 when the model has no groups).")]
    [InlineData("--replicas 0 --gpus 8", "--replicas 0: give the physical experts per layer, a whole number from 1 to 65,536.")]
    [InlineData("--replicas 16 --gpus x", "--gpus x: give the number of GPUs, a whole number from 1 to 65,536.")]
    [InlineData("--gpus 8", "Option '--replicas' is required. Run moegs plan --help for usage.")]
    [InlineData("--nodes 1", "Options '--replicas' and '--gpus' are required. Run moegs plan --help for usage.")]
    public void InvalidArgumentsAreOneLineUsageErrorsNamingTheOption(string arguments, string expected)
    {
        var npy = WriteNpy("load.npy", "<i8", EplbExample.PublishedLoads);

        var (code, output, error) = Moegs.Run(["plan", npy, .. arguments.Split(' ')]);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Contains(expected.Replace("LOAD", npy, StringComparison.Ordinal), error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    [Theory]
    [InlineData("missing.npy", null, "no such file.")]
    [InlineData("neg.json", "[[1, 2], [3, -4]]", "the load of expert 1 in layer 1 is -4; loads are token counts, 0 or more.")]
    [InlineData("ragged.json", "[[1, 2], [3]]", "row 1 has 1 load, row 0 has 2")]
    [InlineData("frac.json", "[[1, 2.5]]", "row 0, load 1 is 2.5; loads are whole numbers")]
    [InlineData("float-form.json", "[[1, 2.0]]", "row 0, load 1 is 2.0; loads are whole numbers from 0 to 9,223,372,036,854,775,807, written without a decimal point or exponent (1, not 1.0 or 1e0).")]
    [InlineData("exponent.json", "[1e3, 2]", "load 0 is 1e3; loads are whole numbers from 0 to 9,223,372,036,854,775,807, written without a decimal point or exponent")]
    [InlineData("nested.json", "[[[1, 2]]]", "row 0, load 0 is [1, 2]; loads are whole numbers from 0 to 9,223,372,036,854,775,807.")]
    [InlineData("huge.json", "[[1, 9223372036854775808]]", "row 0, load 1 is 9223372036854775808; loads are whole numbers from 0 to 9,223,372,036,854,775,807.")]
    [InlineData("text.json", "\"loads\"", "JSON string; give an array of arrays")]
    [InlineData("empty.json", "[]", "an empty array: no loads, nothing to place.")]
    [InlineData("empty-rows.json", "[[], []]", "2 empty rows: no loads, nothing to place.")]
    [InlineData("zeros.json", "[[0, 0], [0, 0]]", "every load is 0: nothing to balance.")]
    [InlineData("garbage.json", "not json", "neither a .npy file nor JSON")]
    [InlineData("trailing.json", "[[1, 2]] [3]", "neither a .npy file nor JSON ('[' is invalid after a single JSON value")]
    [InlineData("late-break.json", "[[1, 2], [3, 4], [5, ]]", "neither a .npy file nor JSON")]
    [InlineData("mixed.json", "[[1, 2], {\"a\": 1}]", "row 1 is an object, not an array of loads.")]
    [InlineData("flat-then-row.json", "[1, [2]]", "load 1 is [2]; loads are whole numbers")]
    [InlineData("null-row.json", "[[1, 2], null]", "row 1 is null, not an array of loads.")]
    [InlineData("bad-snapshot.json", "{\"total_tokens\": \"many\"}", "not a routing statistics snapshot")]
    [InlineData("trace.jsonl", "{\"topk_ids\": [[1, 2]]}\n{\"topk_ids\": [[0, 3]]}\n", "JSON lines, as a trace of top-k ids, not a load; replay the trace with --window-load")]
    [InlineData("ids.npz", "PK\u0003\u0004 an archive", "an .npz archive (of top-k ids?), not a load; `moegs replay")]
    public void UnreadableOrMalformedFilesExitWithOneLineNamingTheFile(string name, string? content, string expected)
    {
        var path = Path.Combine(_folder.FullName, name);
        if (content is not null)
        {
            File.WriteAllText(path, content);
        }

        var (code, output, error) = Moegs.Run("plan", path, "--replicas", "4", "--gpus", "2");

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.StartsWith($"{path}: ", error);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    [Theory]
    [InlineData("<f8", "2, 12", "dtype '<f8'")]
    [InlineData("<i8", "2, 2, 3", "has 3 dimensions; loads are [layers, experts], or [experts] for one layer (a trace of top-k ids? a model's, `[layers, tokens, k]`: `moegs replay FILE --layout layers,tokens,k --window-load load.npy` writes its load, tokens,layers,k likewise; one layer's, `[steps, tokens, k]`: `moegs replay FILE --layout steps,tokens,k --save run.json`, then plan run.json).")]
    [InlineData("<i8", "1, 2, 2, 3", "has 4 dimensions; loads are [layers, experts], or [experts] for one layer (a trace of top-k ids?")]
    [InlineData("<i8", "1, 1, 2, 2, 3", "has 5 dimensions; loads are [layers, experts], or [experts] for one layer.")]
    [InlineData("<i8", "3, 12", "truncated: shape (3, 12) needs")]
    [InlineData("<i8", "1, 12", "shape (1, 12) takes 224 bytes with its header, and 320 are there")]
    [InlineData("<i8", "4611686018427387904, 12", "4,611,686,018,427,387,904 rows; a load has one row per MoE layer, at most 1,024.")]
    [InlineData("<i8", "12, 4611686018427387904", "4,611,686,018,427,387,904 experts per layer; a plan places at most 65,536")]
    [InlineData("<i8", "0, 12", "holds no loads")]
    [InlineData("<i8", "2, 0", "shape (2, 0) holds no loads; nothing to place.")]
    [InlineData("<i8", "0,", "shape (0,) holds no loads; nothing to place.")]
    public void NpySizesAreCheckedAgainstTheFileBeforeAnythingIsAllocated(string descr, string shape, string expected)
    {
        var data = EplbExample.PublishedLoads.Cast<long>().SelectMany(BitConverter.GetBytes).ToArray();
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "bad.npy"), descr, shape, data);

        var (code, _, error) = Moegs.Run("plan", npy, "--replicas", "16", "--gpus", "8");

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }

    /// <summary>
    /// More experts than --replicas may take: the file is named, not a --replicas the option refuses (it
    /// said "give at least 65,537"); more rows than a model has layers (a trace of ids, [tokens, k],
    /// reads as loads) are refused before the plan, naming how to plan a trace's load (they were planned:
    /// a trace of 4,096 tokens as 4,096 layers of k experts, and 2,000 one-expert rows asked for 2^27 slots).
    /// Both are refused from the header, before the data is read: a file that claims a billion loads holds
    /// none here (it was read whole, gigabytes of memory, before the refusal).
    /// </summary>
    [Theory]
    [InlineData("1, 65537", "--replicas 65536 --gpus 1", ExitCodes.BadInput, "{0}: 65,537 experts per layer; a plan places at most 65,536 (the most --replicas takes), one slot each at least.")]
    [InlineData("2000, 1", "--replicas 65536 --gpus 1", ExitCodes.BadInput, "{0}: 2,000 rows; a load has one row per MoE layer, at most 1,024. A [tokens, k] array of top-k ids is a trace: `moegs replay {0} --experts E --save FILE.json` saves its load, which plan reads.")]
    [InlineData("1024, 1048576", "--replicas 64 --gpus 8", ExitCodes.BadInput, "{0}: 1,048,576 experts per layer; a plan places at most 65,536 (the most --replicas takes), one slot each at least.")]
    [InlineData("1048576, 1024", "--replicas 64 --gpus 8", ExitCodes.BadInput, "{0}: 1,048,576 rows; a load has one row per MoE layer, at most 1,024. A [tokens, k] array of top-k ids is a trace: `moegs replay {0} --experts E --save FILE.json` saves its load, which plan reads.")]
    [InlineData("1025, 1", "--replicas 64 --gpus 8", ExitCodes.BadInput, "{0}: 1,025 rows; a load has one row per MoE layer, at most 1,024. A [tokens, k] array of top-k ids is a trace: `moegs replay {0} --experts E --save FILE.json` saves its load, which plan reads.")]
    [InlineData("4096, 8", "--replicas 64 --gpus 8", ExitCodes.BadInput, "{0}: 4,096 rows; a load has one row per MoE layer, at most 1,024. A [tokens, k] array of top-k ids is a trace: `moegs replay {0} --experts E --save FILE.json` saves its load, which plan reads.")]
    public void LoadsLargerThanAPlanAreRefusedNamingWhatIsTooLarge(string shape, string arguments, int exitCode, string expected)
    {
        var dims = shape.Split(", ").Select(int.Parse).ToArray();
        var loads = (long)dims[0] * dims[1];
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "wide.npy"), "|u1", shape, new byte[loads <= 1 << 20 ? loads : 0]);

        var (code, output, error) = Moegs.Run(["plan", npy, .. arguments.Split(' ')]);

        Assert.Equal(exitCode, code);
        Assert.Empty(output);
        Assert.Equal(string.Format(System.Globalization.CultureInfo.InvariantCulture, expected, npy), error.TrimEnd());
    }

    /// <summary>
    /// --json refuses a plan whose padded logical_to_physical would pass its bound, before writing anything: one
    /// expert given nearly every replica pads each expert's list to that count (a 32 KB load wrote 3 GB). Of many
    /// layers, it is refused before the plan is made, by the plan of the layer whose hottest expert has the largest
    /// share (1,024 layers of 65,536 slots took a minute and 2.6 GB to be refused). The plan itself is still printed
    /// without --json. A later layer as hot as the first hottest leaves the first named.
    /// </summary>
    [Theory]
    [InlineData(1, 0, null)]
    [InlineData(16, 5, null)]
    [InlineData(16, 5, 11)]
    public void JsonRefusesAPaddedMapPastItsBound(int layers, int hot, int? asHot)
    {
        const int Experts = 1_100, Replicas = 65_536;
        var loads = new long[layers * Experts];
        Array.Fill(loads, 1L);
        loads[((layers - 1) * Experts) + 7] = 1_000;
        loads[hot * Experts] = 1_000_000_000_000_000;
        if (asHot is { } layer)
        {
            loads[layer * Experts] = loads[hot * Experts];
        }

        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "hot.npy"), "<i8", $"{layers}, {Experts}", [.. loads.SelectMany(BitConverter.GetBytes)]);

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", $"{Replicas}", "--gpus", "1", "--json");

        const int Most = Replicas - Experts + 1;
        var entries = FormattableString.Invariant($"{(long)layers * Experts * Most:N0} entries ({Counted.Of(layers, "layer")} x 1,100 experts x {Most:N0} replicas of ");
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal(
            "--json: logical_to_physical, EPLB's [layers, experts, most replicas] padded with -1, would hold "
            + (layers == 1 ? $"{entries}the most replicated expert); " : $"at least {entries}layer {hot}'s most replicated expert, at most the plan's most); ")
            + FormattableString.Invariant($"--json writes at most {PlanCommand.MaxJsonEntries:N0}: give fewer --replicas, or run without --json for the plan's summary."),
            error.TrimEnd());
        var summary = Moegs.Run("plan", npy, "--replicas", $"{Replicas}", "--gpus", "1");
        Assert.True(summary.Code == ExitCodes.Ok, summary.Error);
    }

    /// <summary>--json's bound is inclusive: a padded logical_to_physical of exactly <see cref="PlanCommand.MaxJsonEntries"/> entries is written.</summary>
    [Fact]
    public void JsonTakesAPaddedMapOfExactlyItsBound()
    {
        const int Experts = 4_096, Most = 16_384;
        var loads = new long[1, Experts];
        for (var expert = 0; expert < Experts; expert++)
        {
            loads[0, expert] = expert == 0 ? 1_000_000_000_000 : 1;
        }

        var plan = MoeGpuStats.Placement.ExpertPlacement.Rebalance(loads, Experts + Most - 1, 1, 1, 1);

        Assert.Equal(Most, plan.MaxReplicas);
        Assert.Equal(PlanCommand.MaxJsonEntries, (long)Experts * Most);
        Assert.Null(PlanCommand.TooLargeForJson(plan, layers: 1));
        Assert.StartsWith("--json: logical_to_physical, EPLB's [layers, experts, most replicas] padded with -1, would hold 134,217,728 entries", PlanCommand.TooLargeForJson(plan, layers: 2));
    }

    /// <summary>A snapshot of one layer may count more experts than a plan has slots (the managed engine takes 2^20): named as the file's, as an array's are.</summary>
    [Fact]
    public void ASnapshotOfMoreExpertsThanAPlanPlacesIsRefusedNamingIt()
    {
        var path = Path.Combine(_folder.FullName, "wide-run.json");
        using (var stats = new RoutingStats(new RoutingStatsOptions { Experts = 100_000 }))
        {
            stats.RecordRouting([5, 99_999], tokens: 1, topK: 2);
            RoutingStatsFile.Save(stats, path);
        }

        var (code, output, error) = Moegs.Run("plan", path, "--replicas", "64", "--gpus", "8");

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{path}: 100,000 experts per layer; a plan places at most 65,536 (the most --replicas takes), one slot each at least.", error.TrimEnd());
    }

    /// <summary>With --load-per-slot a load's columns are slots, and its refusals call them so (they said "experts").</summary>
    [Fact]
    public void ALoadPerSlotIsRefusedInSlots()
    {
        var bare = Path.Combine(_folder.FullName, "bare.json");
        File.WriteAllText(bare, JsonSerializer.Serialize(EplbExample.PublishedPhy2Log));
        var wide = NpyFile.Write(Path.Combine(_folder.FullName, "wide-slots.npy"), "|u1", "1, 65537", new byte[65_537]);
        var negative = WriteNpy("negative-slots.npy", "<i8", new long[,] { { 4, -1, 2 } });

        var (code, output, error) = Moegs.Run("plan", wide, "--replicas", "16", "--gpus", "8", "--current", bare, "--load-per-slot");
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"{wide}: 65,537 slots per layer; a plan places at most 65,536 (the most --replicas takes), one slot each at least.", error.TrimEnd());

        (code, _, error) = Moegs.Run("plan", negative, "--replicas", "16", "--gpus", "8", "--current", bare, "--load-per-slot");
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"{negative}: the load of slot 1 in layer 0 is -1; loads are token counts, 0 or more.", error.TrimEnd());
    }

    private static double[] ExpertPlacement_Balancedness() =>
        MoeGpuStats.Placement.ExpertPlacement.Balancedness(
            EplbExample.PublishedLoads,
            MoeGpuStats.Placement.ExpertPlacement.Rebalance(EplbExample.PublishedLoads, 16, 4, 2, 8));

    /// <summary>
    /// A [tokens, k] array of ids under 1,025 rows reads as a load of that many layers: planned, with a note naming
    /// replay; a load of a model's layers, however few its experts, gets no note, nor a snapshot's.
    /// </summary>
    [Theory]
    [InlineData(200, 8, true)]
    [InlineData(129, 16, true)]
    [InlineData(128, 8, false)]
    [InlineData(200, 17, false)]
    public void AnArrayShapedAsTopKIdsIsPlannedWithANote(int rows, int columns, bool noted)
    {
        var ids = new long[rows, columns];
        for (var t = 0; t < rows; t++)
        {
            for (var j = 0; j < columns; j++)
            {
                ids[t, j] = ((t * 7) + j) % (columns * 2);
            }
        }

        var npy = WriteNpy("ids.npy", "<i4", ids);

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", $"{columns * 2}", "--gpus", "2");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"plan {npy}: {rows:N0} layers of {columns} experts", output);
        var note = $"note: ids.npy is read as the load of {rows:N0} layers of {columns} experts, more layers than today's MoE models have (94, Qwen3-235B); if it holds top-k ids, [tokens, k], it is a trace: `moegs replay ids.npy --experts E --save FILE.json` saves its load, which plan reads.";
        Assert.Equal(noted ? note : "", error.Trim());
    }

    /// <summary>Replay reads ids from a .npy, not from a JSON array: for a JSON file, the note and the refusal say to save it with np.save first.</summary>
    [Fact]
    public void AJsonArrayShapedAsTopKIdsIsToldToBeSavedAsNpyForReplay()
    {
        var json = Path.Combine(_folder.FullName, "ids.json");
        string Rows(int rows) => $"[{string.Join(", ", Enumerable.Range(0, rows).Select(t => $"[{t % 8}, {(t + 1) % 8}]"))}]";
        const string Replay = "saved as .npy (np.save), `moegs replay FILE.npy --experts E --save FILE.json` saves its load, which plan reads.";

        File.WriteAllText(json, Rows(200));
        var (code, _, error) = Moegs.Run("plan", json, "--replicas", "4", "--gpus", "2");
        Assert.True(code == ExitCodes.Ok, error);
        Assert.EndsWith($"it is a trace: {Replay}", error.Trim());

        File.WriteAllText(json, Rows(2_000));
        (code, _, error) = Moegs.Run("plan", json, "--replicas", "4", "--gpus", "2");
        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Equal($"{json}: 2,000 rows; a load has one row per MoE layer, at most 1,024. A [tokens, k] array of top-k ids is a trace: {Replay}", error.Trim());
    }

    /// <summary>
    /// A JSON array's shape is refused before a matrix of it is allocated, and the array is not kept as a document on
    /// the way: a 4 MB file of one row of 2^21 zeros allocated 164 MB before its refusal (a document, then an array of
    /// its elements). Now the file's bytes are about all a refusal allocates (4.2 MB).
    /// </summary>
    [Theory]
    [InlineData(1, 1 << 21, "2,097,152 experts per layer; a plan places at most 65,536")]
    [InlineData(1 << 18, 1, "262,144 rows; a load has one row per MoE layer, at most 1,024.")]
    public void AJsonLoadTooLargeForAPlanIsRefusedAllocatingLittleMoreThanTheFile(int rows, int columns, string expected)
    {
        var json = Path.Combine(_folder.FullName, "wide.json");
        var row = $"[{string.Join(',', Enumerable.Repeat('0', columns))}]";
        File.WriteAllText(json, rows == 1 ? row : $"[{string.Join(',', Enumerable.Repeat(row, rows))}]");
        var length = new FileInfo(json).Length;

        var before = GC.GetAllocatedBytesForCurrentThread();
        var refusal = Assert.Throws<InvalidDataException>(() => LoadMatrix.Read(json));
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal($"{json}: {expected}", refusal.Message[..(json.Length + 2 + expected.Length)]);
        Assert.True(allocated < length + (1 << 20), $"{allocated:N0} bytes allocated to refuse a {length:N0}-byte file");
    }

    /// <summary>A ragged row is found by the shape pass, before any value is read: the last row's fault is named, not a value's.</summary>
    [Fact]
    public void AJsonLoadIsRefusedForItsShapeBeforeItsValues()
    {
        var json = Path.Combine(_folder.FullName, "ragged.json");
        File.WriteAllText(json, "[[1, \"x\"], [3, 4], [5]]");

        var refusal = Assert.Throws<InvalidDataException>(() => LoadMatrix.Read(json));

        Assert.Equal($"{json}: row 2 has 1 load, row 0 has 2; every layer has the same experts.", refusal.Message);
    }

    /// <summary>
    /// A --current placement larger than any plan is refused while it is read, not gathered whole first: a 128 MB
    /// bare array of one layer's slots took 925 MB before the placement was compared with the loads.
    /// </summary>
    [Theory]
    [InlineData(1, 65_537, "layer 0 of physical_to_logical has more than 65,536 slots, the most a plan places.")]
    [InlineData(1_025, 1, "physical_to_logical has more than 1,024 layers, the most a model has.")]
    public void ACurrentPlacementLargerThanAnyPlanIsRefusedWhileRead(int layers, int slots, string expected)
    {
        var npy = WriteNpy("load.npy", "<i8", EplbExample.PublishedLoads);
        var current = Path.Combine(_folder.FullName, "current.json");
        var row = $"[{string.Join(',', Enumerable.Repeat('0', slots))}]";
        File.WriteAllText(current, $"[{string.Join(',', Enumerable.Repeat(row, layers))}]");

        var (code, output, error) = Moegs.Run("plan", npy, "--replicas", "16", "--gpus", "8", "--current", current);

        Assert.Equal(ExitCodes.BadInput, code);
        Assert.Empty(output);
        Assert.Equal($"--current {current}: {expected}", error.TrimEnd());
    }

    private string WriteNpy(string name, string descr, long[,] loads, string? shape = null)
    {
        var data = descr == "<i4"
            ? loads.Cast<long>().SelectMany(v => BitConverter.GetBytes((int)v)).ToArray()
            : loads.Cast<long>().SelectMany(BitConverter.GetBytes).ToArray();
        return NpyFile.Write(Path.Combine(_folder.FullName, name), descr, shape ?? $"{loads.GetLength(0)}, {loads.GetLength(1)}", data);
    }
}
