using ILGPU.Runtime;

namespace MoeGpuStats.Tests.Model;

/// <summary>
/// <see cref="ModelRoutingStats.DeviceArrays"/>: the views are the model's own state, the pending step
/// folded in, at fixed addresses; the managed engine, which has no device memory, refuses.
/// </summary>
public sealed class ModelDeviceArraysTests
{
    public static TheoryData<string> Accelerators => ["cpu", "cuda", "opencl"];

    private static readonly ModelRoutingStatsOptions Options = new() { Layers = 3, Experts = 16, Window = 4, ExpertCapacity = 6 };

    /// <summary>
    /// Read right after each step, before any other read, so that the step is still pending when the
    /// call comes: the views hold it, equal to counts computed from the ids, and stay at one address.
    /// </summary>
    [Theory]
    [MemberData(nameof(Accelerators))]
    public void TheViewsHoldEveryStepRecordedTheLastOneFoldedIn(string kind)
    {
        using var model = ModelRoutingStats.OnDevice(TestAccelerators.Require(kind), Options);
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, topK: 2, count: 11, seed: 21);
        var recorded = new List<ModelSteps.Step>();
        var first = model.DeviceArrays();
        Assert.Equal((Options.Layers, Options.Experts, 0ul, 0), (first.Layers, first.Experts, first.Steps, first.WindowSteps));
        foreach (var step in steps)
        {
            model.RecordStep(step.Ids.AsSpan(0, (Options.Layers - 1) * step.Stride + step.Valid * step.TopK), step.Valid, step.TopK, step.Stride);
            recorded.Add(step);
            var arrays = model.DeviceArrays();
            var (windowLoad, tokenCounts) = Read(arrays);
            Assert.Equal(ModelSteps.WindowLoad(Options, recorded), windowLoad);
            Assert.Equal(TokenCounts(recorded), tokenCounts);
            Assert.Equal(((ulong)recorded.Count, Math.Min(recorded.Count, Options.Window)), (arrays.Steps, arrays.WindowSteps));
            Assert.Equal(Options.Layers * (long)Options.Experts, arrays.WindowLoad.Length);
            Assert.Equal(first.WindowLoad.LoadEffectiveAddressAsPtr(), arrays.WindowLoad.LoadEffectiveAddressAsPtr());
            Assert.Equal(first.TokenCounts.LoadEffectiveAddressAsPtr(), arrays.TokenCounts.LoadEffectiveAddressAsPtr());
            Assert.Same(first.Stream, arrays.Stream);
        }

        for (var l = 0; l < Options.Layers; l++)
        {
            using var layer = model.Layer(l);
            Assert.Equal(TokenCounts(recorded).Skip(l * Options.Experts).Take(Options.Experts), layer.ExpertTokenCounts);
        }
    }

    /// <summary>No copy: what is written through a view is what the model reads (the reason a collective must reduce a copy).</summary>
    [Theory]
    [MemberData(nameof(Accelerators))]
    public void AWriteThroughAViewIsTheModelsOwnState(string kind)
    {
        using var model = ModelRoutingStats.OnDevice(TestAccelerators.Require(kind), Options);
        var step = ModelSteps.Random(Options.Layers, Options.Experts, topK: 2, count: 1, seed: 5)[0];
        model.RecordStep(step.Ids, step.Tokens, step.TopK, step.Stride);
        Assert.NotEqual(0ul, model.WindowLoad().Aggregate((a, b) => a + b));

        var arrays = model.DeviceArrays();
        arrays.WindowLoad.MemSetToZero(arrays.Stream);
        Assert.All(model.WindowLoad(), load => Assert.Equal(0ul, load));

        model.Reset();
        var (windowLoad, tokenCounts) = Read(model.DeviceArrays());
        Assert.All(windowLoad.Concat(tokenCounts), count => Assert.Equal(0ul, count));
    }

    [Fact]
    public void TheManagedEngineHasNoDeviceArrays()
    {
        using var model = new ModelRoutingStats(Options);
        var refused = Assert.Throws<InvalidOperationException>(() => model.DeviceArrays());
        Assert.Contains("managed engine", refused.Message);
        Assert.Contains("WindowLoad()", refused.Message);

        // A snapshot of a device model is managed too: a copy, not the device's memory.
        using var onDevice = ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), Options);
        using var snapshot = onDevice.Snapshot();
        Assert.Throws<InvalidOperationException>(() => snapshot.DeviceArrays());
        onDevice.Dispose();
        Assert.Throws<ObjectDisposedException>(() => onDevice.DeviceArrays());
    }

    private static (ulong[] WindowLoad, ulong[] TokenCounts) Read(ModelDeviceArrays arrays)
    {
        arrays.Stream.Synchronize();
        var windowLoad = new ulong[arrays.WindowLoad.Length];
        var tokenCounts = new ulong[arrays.TokenCounts.Length];
        arrays.WindowLoad.CopyToCPU(arrays.Stream, windowLoad.AsSpan());
        arrays.TokenCounts.CopyToCPU(arrays.Stream, tokenCounts.AsSpan());
        return (windowLoad, tokenCounts);
    }

    /// <summary>Each expert's slots over every step, <c>[layers, experts]</c>, computed from the ids.</summary>
    private static ulong[] TokenCounts(IReadOnlyList<ModelSteps.Step> steps) =>
        ModelSteps.WindowLoad(Options with { Window = steps.Count }, steps);
}
