using System.Text.Json;
using System.Text.Json.Nodes;
using MoeGpuStats.Serialization;
using MoeGpuStats.Tests.Support;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>A checkpoint (<see cref="RoutingStatsFile.Save(ModelRoutingStats, string, bool)"/> with the window ring) resumes a run.</summary>
public sealed class ModelCheckpointTests : IDisposable
{
    private static readonly ModelRoutingStatsOptions Options = new()
    {
        Layers = 3, Experts = 8, Window = 5, ExpertCapacity = 6, UtilizationDecay = 0.99999f,
    };

    private readonly string _folder = Directory.CreateTempSubdirectory("moegs-checkpoint-").FullName;

    public static TheoryData<string, int> Runs => new()
    {
        { "managed", 3 },    // before the window wraps
        { "managed", 5 },    // exactly a window
        { "managed", 12 },   // wrapped
        { "cpu", 3 },
        { "cpu", 12 },
    };

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    /// <summary>
    /// A model read back from its checkpoint and fed the rest of the steps equals the model that recorded them all, in
    /// every field the JSON holds (the f64 sums and decayed averages too), its window and its newest steps' load.
    /// </summary>
    [Theory]
    [MemberData(nameof(Runs))]
    public void AModelReadFromItsCheckpointRecordsOnAsTheSavedOne(string engine, int before)
    {
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, 2, before + 9, seed: 40 + before);
        using var whole = Create(engine);
        foreach (var step in steps.Take(before))
        {
            Record(whole, step);
        }

        var path = Path.Combine(_folder, "checkpoint.json");
        RoutingStatsFile.Save(whole, path, withWindowRing: true);
        using var resumed = RoutingStatsFile.LoadModel(path);
        foreach (var step in steps.Skip(before))
        {
            Record(whole, step);
            Record(resumed, step);
        }

        Assert.Equal(JsonSerializer.Serialize(whole), JsonSerializer.Serialize(resumed));
        Assert.Equal(whole.WindowLoad(), resumed.WindowLoad());
        Assert.Equal(whole.WindowLoad(recentSteps: 2), resumed.WindowLoad(recentSteps: 2));
        Assert.Equal(ModelSteps.WindowLoad(Options, steps), resumed.WindowLoad());
        Assert.Equal(whole.Layer(1).LoadVarianceHistory, resumed.Layer(1).LoadVarianceHistory);
    }

    /// <summary>
    /// Every checkpoint the library writes reads back, its rows in the order its variance histories check: windows of
    /// one and two steps, empty steps left out, a window longer than the 1,000 variances a layer keeps.
    /// </summary>
    [Theory]
    [InlineData("managed", 1, false, 9)]
    [InlineData("managed", 2, true, 15)]
    [InlineData("managed", 1_200, false, 1_300)]
    [InlineData("cpu", 1, true, 9)]
    [InlineData("cpu", 2, false, 15)]
    public void EveryCheckpointTheLibraryWritesReadsBack(string engine, int window, bool skipEmptySteps, int steps)
    {
        var options = Options with { Window = window, SkipEmptySteps = skipEmptySteps };
        using var model = engine == "managed" ? new ModelRoutingStats(options) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), options);
        foreach (var step in ModelSteps.Random(options.Layers, options.Experts, 2, steps, seed: window))
        {
            Record(model, step);
        }

        var path = Path.Combine(_folder, "checkpoint.json");
        RoutingStatsFile.Save(model, path, withWindowRing: true);
        using var read = RoutingStatsFile.LoadModel(path);
        Assert.Equal(model.WindowLoad(), read.WindowLoad());
        Assert.Equal(model.Layer(2).LoadVarianceHistory, read.Layer(2).LoadVarianceHistory);
    }

    /// <summary>Without the ring a saved model reads back as before: it reads and merges, and refuses to record.</summary>
    [Fact]
    public void WithoutTheRingTheFileIsTheSnapshotAndRecordsNoMore()
    {
        using var model = Recorded(7);
        var snapshot = Path.Combine(_folder, "snapshot.json");
        var plain = Path.Combine(_folder, "plain.json");
        RoutingStatsFile.Save(model, snapshot);
        RoutingStatsFile.Save(model, plain, withWindowRing: false);
        Assert.Equal(File.ReadAllText(snapshot), File.ReadAllText(plain));
        Assert.DoesNotContain("window_ring", File.ReadAllText(plain), StringComparison.Ordinal);
        using var read = RoutingStatsFile.LoadModel(plain);
        Assert.Throws<InvalidOperationException>(() => read.RecordStep(new int[Options.Layers * 2], 1, 2));
    }

    /// <summary>A ring no run leaves is refused in one line naming the field; the file's other fields were valid.</summary>
    [Theory]
    [InlineData("sum", "window_ring.rows sum to 3 for layer 0, expert 0, but window_load[0][0] is 2; the window's load is the sum of its steps.")]
    [InlineData("rows", "window_ring.rows holds 4 rows; the window holds 5 steps (window = 5, window_steps = 5).")]
    [InlineData("short", "window_ring.rows[2] must be base64 of 24 little-endian uint32 counts (layers × experts).")]
    [InlineData("text", "window_ring.rows[0] must be base64 of 24 little-endian uint32 counts (layers × experts).")]
    [InlineData("position", "window_ring.position is 5; it is a whole number, a row of the window, 0 to 4.")]
    [InlineData("position text", "window_ring.position is \"2\"; it is a whole number, a row of the window, 0 to 4.")]
    [InlineData("position twice", "The field 'window_ring.position' is given twice; a snapshot gives each field once.")]
    [InlineData("shape", "window_ring must be an object of position (the row the next step writes) and rows (an array of base64 strings).")]
    public void ARingNoRunLeavesIsRefusedNamingIt(string edit, string message)
    {
        using var model = new ModelRoutingStats(Options);
        for (var s = 0; s < 8; s++)
        {
            // Layer 0's token goes to expert 0 on even steps only: the window (steps 3 to 7) holds 2 of its slots.
            var ids = new int[Options.Layers * 2];
            ids[0] = s % 2 == 0 ? 0 : 1;
            ids[1] = 3;
            model.RecordStep(ids, 1, 2);
        }

        var path = Path.Combine(_folder, "checkpoint.json");
        RoutingStatsFile.Save(model, path, withWindowRing: true);
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        Assert.Equal(2UL, json["window_load"]![0]![0]!.GetValue<ulong>());
        var ring = json["window_ring"]!.AsObject();
        var rows = ring["rows"]!.AsArray();
        switch (edit)
        {
            case "sum":
                var bytes = Convert.FromBase64String(rows[0]!.GetValue<string>());
                bytes[0]++;
                rows[0] = Convert.ToBase64String(bytes);
                break;
            case "rows":
                rows.RemoveAt(4);
                break;
            case "short":
                rows[2] = Convert.ToBase64String(new byte[4 * 23]);
                break;
            case "text":
                rows[0] = "not base64!";
                break;
            case "position":
                ring["position"] = 5;
                break;
            case "position text":
                ring["position"] = "2";
                break;
            case "position twice":
                break;
            default:
                json["window_ring"] = new JsonArray();
                break;
        }

        var text = json.ToJsonString();
        if (edit == "position twice")
        {
            // JsonNode keeps one of each name: the second position is added as text.
            text = text.Replace("\"position\":", "\"position\":0,\"position\":", StringComparison.Ordinal);
        }

        File.WriteAllText(path, text);
        var refusal = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.LoadModel(path));
        Assert.Contains(message, refusal.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Rows in another order, which keep the window's load, are refused by the layers' variance histories; a merge's
    /// rows, whose variances its history does not hold, read and record on.
    /// </summary>
    [Fact]
    public void RowsOutOfOrderAreRefusedAndAMergesRowsRead()
    {
        using var model = Recorded(12);
        var path = Path.Combine(_folder, "checkpoint.json");
        RoutingStatsFile.Save(model, path, withWindowRing: true);
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        var rows = json["window_ring"]!["rows"]!.AsArray();
        var (first, second) = (rows[0]!.GetValue<string>(), rows[1]!.GetValue<string>());
        rows[0] = second;
        rows[1] = first;
        File.WriteAllText(path, json.ToJsonString());
        var refusal = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.LoadModel(path));
        Assert.Contains("window_ring.rows[", refusal.Message, StringComparison.Ordinal);
        Assert.Contains("each row holds the step whose variance the history keeps, the newest before position (rows out of order, or edited).", refusal.Message, StringComparison.Ordinal);

        using var other = Recorded(9);
        using var merged = ModelRoutingStats.Merge([model, other]);
        RoutingStatsFile.Save(merged, path, withWindowRing: true);
        using var read = RoutingStatsFile.LoadModel(path);
        var step = ModelSteps.Random(Options.Layers, Options.Experts, 2, 1, seed: 3)[0];
        Record(merged, step);
        Record(read, step);
        Assert.Equal(JsonSerializer.Serialize(merged), JsonSerializer.Serialize(read));
    }

    /// <summary>
    /// A model that keeps its window's load but no ring (read from a file without one, or merged with such a part) has
    /// no steps to checkpoint: refused in the library's words, the target left as it was.
    /// </summary>
    [Fact]
    public void AModelWithoutARingIsRefusedACheckpoint()
    {
        using var model = Recorded(7);
        var plainPath = Path.Combine(_folder, "plain.json");
        RoutingStatsFile.Save(model, plainPath);
        using var plain = RoutingStatsFile.LoadModel(plainPath);
        using var merged = ModelRoutingStats.Merge([model, plain]);
        var path = Path.Combine(_folder, "checkpoint.json");
        File.WriteAllText(path, "kept");
        foreach (var ringless in new[] { plain, merged })
        {
            var refusal = Assert.Throws<InvalidOperationException>(() => RoutingStatsFile.Save(ringless, path, withWindowRing: true));
            Assert.StartsWith("This model's window keeps its load but not its ring of steps", refusal.Message, StringComparison.Ordinal);
            Assert.Equal("kept", File.ReadAllText(path));
        }

        Assert.Empty(Directory.GetFiles(_folder, "*.tmp"));
    }

    /// <summary>
    /// The ring's base64 is bounded so that the file reads back: 512 MiB, about 100 million counts; a model whose ring
    /// is larger is refused before anything is written (here the bound's arithmetic, and a small model's rows).
    /// </summary>
    [Fact]
    public void TheRingsBase64IsBoundedWhereTheFileReadsBack()
    {
        // A row of 4,096 counts is 16,384 bytes, 21,848 of base64 with its padding.
        Assert.Equal(536_870_904, WindowRingJson.Base64Bytes(24_573, 1, 4_096));
        Assert.True(WindowRingJson.Base64Bytes(24_574, 1, 4_096) > WindowRingJson.MostBase64Bytes);
        Assert.Equal(79_192_000, WindowRingJson.Base64Bytes(1_000, 58, 256));
        using var model = Recorded(2);
        var path = Path.Combine(_folder, "small.json");
        RoutingStatsFile.Save(model, path, withWindowRing: true);
        var rows = JsonNode.Parse(File.ReadAllText(path))!["window_ring"]!["rows"]!.AsArray();
        Assert.Equal(WindowRingJson.Base64Bytes(2, Options.Layers, Options.Experts), rows.Sum(row => (long)row!.GetValue<string>().Length));
    }

    private static ModelRoutingStats Create(string engine) =>
        engine == "managed" ? new ModelRoutingStats(Options) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), Options);

    private static ModelRoutingStats Recorded(int steps)
    {
        var model = new ModelRoutingStats(Options);
        foreach (var step in ModelSteps.Random(Options.Layers, Options.Experts, 2, steps, seed: 7))
        {
            Record(model, step);
        }

        return model;
    }

    private static void Record(ModelRoutingStats model, ModelSteps.Step step) =>
        model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
}
