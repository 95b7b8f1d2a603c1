using System.Text.Json;
using MoeGpuStats.Serialization;
using MoeGpuStats.Tests.Support;

namespace MoeGpuStats.Tests.Model;

/// <summary>
/// <see cref="ModelRoutingStats.OnDevice(ILGPU.Runtime.Accelerator, ModelRoutingStats, ILGPU.Runtime.AcceleratorStream?)"/>:
/// a model's state copied onto a device records on as the model it came from, to the bit (a checkpoint resumed on a GPU).
/// </summary>
public sealed class ModelOnDeviceCopyTests : IDisposable
{
    private static readonly ModelRoutingStatsOptions Options = new()
    {
        Layers = 3, Experts = 8, Window = 5, ExpertCapacity = 6, UtilizationDecay = 0.99999f,
    };

    private readonly string _folder = Directory.CreateTempSubdirectory("moegs-device-copy-").FullName;

    /// <summary>Resumed before the window wraps, at a whole window, and past it, on every accelerator present.</summary>
    public static TheoryData<string, int> Runs
    {
        get
        {
            var runs = new TheoryData<string, int>();
            foreach (var kind in new[] { "cpu", "cuda", "opencl" })
            {
                foreach (var before in new[] { 3, 5, 12 })
                {
                    runs.Add(kind, before);
                }
            }

            return runs;
        }
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    /// <summary>
    /// A checkpoint saved on the managed engine, read back and copied onto a device, then fed the rest of the steps, equals
    /// the managed model that recorded them all: every field the JSON holds (the f64 sums and decayed averages, the
    /// variance histories, the capacity statistics), the window, its newest steps and the summary.
    /// </summary>
    [Theory]
    [MemberData(nameof(Runs))]
    public void ACheckpointResumedOnADeviceRecordsOnAsTheSavedModel(string kind, int before)
    {
        var accelerator = TestAccelerators.Require(kind);
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, 2, before + 9, seed: 60 + before);
        using var whole = new ModelRoutingStats(Options);
        Record(whole, steps.Take(before));
        var path = Path.Combine(_folder, "checkpoint.json");
        RoutingStatsFile.Save(whole, path, withWindowRing: true);
        using var read = RoutingStatsFile.LoadModel(path);
        using var resumed = ModelRoutingStats.OnDevice(accelerator, read);
        Assert.Equal(kind, resumed.Backend);
        Assert.Equal(JsonSerializer.Serialize(whole), JsonSerializer.Serialize(resumed));

        Record(whole, steps.Skip(before));
        Record(resumed, steps.Skip(before));
        Assert.Equal(JsonSerializer.Serialize(whole), JsonSerializer.Serialize(resumed));
        Assert.Equal(ModelSteps.WindowLoad(Options, steps), resumed.WindowLoad());
        Assert.Equal(whole.WindowLoad(recentSteps: 2), resumed.WindowLoad(recentSteps: 2));
        Assert.Equal(whole.Summary(), resumed.Summary());
        Assert.Equal(ModelSteps.Fingerprint(whole), ModelSteps.Fingerprint(resumed));
    }

    /// <summary>
    /// A layer's variance history full (1,000 variances) lies from the device ring's first position and wraps on from
    /// there; a window of one step, and empty steps left out, resume as well.
    /// </summary>
    [Theory]
    [InlineData(5, false, 1_010)]
    [InlineData(1, true, 30)]
    public void AFullVarianceHistoryAndEmptyStepsResumeOnTheDevice(int window, bool skipEmptySteps, int before)
    {
        var options = Options with { Window = window, SkipEmptySteps = skipEmptySteps };
        var steps = ModelSteps.Random(options.Layers, options.Experts, 2, before + 8, seed: window);
        using var whole = new ModelRoutingStats(options);
        Record(whole, steps.Take(before));
        using var resumed = ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), whole);
        Record(whole, steps.Skip(before));
        Record(resumed, steps.Skip(before));
        Assert.Equal(JsonSerializer.Serialize(whole), JsonSerializer.Serialize(resumed));
        Assert.Equal((int)Math.Min(1_000UL, whole.Layer(2).TotalRoutings), resumed.Layer(2).LoadVarianceHistory.Count);
        Assert.Equal(whole.Layer(2).LoadVarianceHistory, resumed.Layer(2).LoadVarianceHistory);
    }

    /// <summary>A model on a device copied onto the device: the source reads and records on as before, and so does the copy.</summary>
    [Fact]
    public void ACopyLeavesItsSourceAsItWas()
    {
        var accelerator = TestAccelerators.Require("cpu");
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, 2, 14, seed: 5);
        using var source = ModelRoutingStats.OnDevice(accelerator, Options);
        Record(source, steps.Take(7));
        var before = JsonSerializer.Serialize(source);
        using var copy = ModelRoutingStats.OnDevice(accelerator, source);
        Assert.Equal(before, JsonSerializer.Serialize(source));
        Record(source, steps.Skip(7));
        Record(copy, steps.Skip(7));
        using var managed = new ModelRoutingStats(Options);
        Record(managed, steps);
        Assert.Equal(JsonSerializer.Serialize(managed), JsonSerializer.Serialize(source));
        Assert.Equal(JsonSerializer.Serialize(managed), JsonSerializer.Serialize(copy));
    }

    /// <summary>A merge of full windows goes to the device with its merged parts and records on as the managed merge.</summary>
    [Fact]
    public void AMergeOfFullWindowsRecordsOnOnTheDevice()
    {
        using var first = Recorded(12, seed: 1);
        using var second = Recorded(9, seed: 2);
        using var merged = ModelRoutingStats.Merge([first, second]);
        using var copy = ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), merged);
        Assert.Equal(2, copy.MergedParts);
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, 2, 6, seed: 3);
        Record(merged, steps);
        Record(copy, steps);
        Assert.Equal(JsonSerializer.Serialize(merged), JsonSerializer.Serialize(copy));
    }

    /// <summary>
    /// A source that cannot record on as a device model does is refused in one line naming it: a model without its ring
    /// (read from a plain file), a merge whose window holds fewer steps than min(window, steps); a disposed source too.
    /// </summary>
    [Fact]
    public void ASourceThatCannotRecordOnIsRefused()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var model = Recorded(7, seed: 4);
        var path = Path.Combine(_folder, "plain.json");
        RoutingStatsFile.Save(model, path);
        using var plain = RoutingStatsFile.LoadModel(path);
        var ringless = Assert.Throws<ArgumentException>(() => ModelRoutingStats.OnDevice(accelerator, plain));
        Assert.Equal("source", ringless.ParamName);
        Assert.StartsWith("The model keeps its window's load but not its ring of steps", ringless.Message, StringComparison.Ordinal);

        using var shorter = Recorded(2, seed: 5);
        using var merged = ModelRoutingStats.Merge([Recorded(3, seed: 6), shorter]);
        var merge = Assert.Throws<ArgumentException>(() => ModelRoutingStats.OnDevice(accelerator, merged));
        Assert.StartsWith("The model is a merge whose window holds 3 steps (its longest part's) of its 5; a device model's window holds min(window = 5, steps) steps", merge.Message, StringComparison.Ordinal);

        var disposed = Recorded(3, seed: 7);
        disposed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => ModelRoutingStats.OnDevice(accelerator, disposed));
        Assert.Equal("source", Assert.Throws<ArgumentNullException>(() => ModelRoutingStats.OnDevice(accelerator, (ModelRoutingStats)null!)).ParamName);
        Assert.Equal("accelerator", Assert.Throws<ArgumentNullException>(() => ModelRoutingStats.OnDevice(null!, model)).ParamName);
    }

    /// <summary>
    /// A device model does not check its steps against the count limit, so a state with a count above 2^62 stays off the
    /// device (refused by name, or put on the managed engine by Create); at 2^62 it goes, and records on as the source.
    /// </summary>
    [Fact]
    public void AStateNearTheCountLimitStaysOffTheDevice()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var recorded = Recorded(7, seed: 9);
        foreach (var (count, refused) in new[] { (ModelRoutingStats.MostDeviceCopyCount + 1, true), (ModelRoutingStats.MostDeviceCopyCount, false) })
        {
            var state = recorded.ExportState();
            state.Layers[1].TotalCapacity = count;
            using var source = new ModelRoutingStats(new MoeGpuStats.Engines.ManagedModelEngine(Options, state));
            if (refused)
            {
                var refusal = Assert.Throws<ArgumentException>(() => ModelRoutingStats.OnDevice(accelerator, source));
                Assert.StartsWith("layers[1].capacity_stats.total_capacity is 4,611,686,018,427,387,905, above 2^62", refusal.Message, StringComparison.Ordinal);
                continue;
            }

            using var copy = ModelRoutingStats.OnDevice(accelerator, source);
            var steps = ModelSteps.Random(Options.Layers, Options.Experts, 2, 3, seed: 10);
            Record(source, steps);
            Record(copy, steps);
            Assert.Equal(JsonSerializer.Serialize(source), JsonSerializer.Serialize(copy));
        }
    }

    private static ModelRoutingStats Recorded(int steps, int seed)
    {
        var model = new ModelRoutingStats(Options);
        Record(model, ModelSteps.Random(Options.Layers, Options.Experts, 2, steps, seed));
        return model;
    }

    private static void Record(ModelRoutingStats model, IEnumerable<ModelSteps.Step> steps)
    {
        foreach (var step in steps)
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
        }
    }
}
