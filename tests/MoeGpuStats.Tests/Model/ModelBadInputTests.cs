using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Tests.Model;

/// <summary>Bad input is refused with a message in the caller's words, and the statistics stay as they were.</summary>
public sealed class ModelBadInputTests
{
    private static readonly ModelRoutingStatsOptions Options = new() { Layers = 3, Experts = 8, Window = 4 };

    public static TheoryData<string> Engines => ["managed", "cpu"];

    [Theory]
    [MemberData(nameof(Engines))]
    public void ABadStepLeavesTheStatisticsAsTheyWere(string engine)
    {
        using var model = ModelRoutingStatsTests.Create(engine, Options);
        var good = new int[Options.Layers * 4 * 2];
        model.RecordStep(good, 4, 2);
        var before = ModelSteps.Fingerprint(model);

        AssertRefused<ArgumentException>(() => model.RecordStep(new int[23], 4, 2), "topKExpertIds", "24");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, layerStride: 7), "layerStride", "at least tokens * topK = 8");
        AssertRefused<ArgumentException>(() => model.RecordStep(new int[2 * 9 + 7], 4, 2, layerStride: 9), "topKExpertIds", "26");
        AssertRefused<ArgumentOutOfRangeException>(() => model.RecordStep(good, 4, 2, layerStride: -1), "layerStride", "-1");
        AssertRefused<ArgumentOutOfRangeException>(() => model.RecordStep(good, 4, 0), "topK", "at least 1");
        AssertRefused<ArgumentOutOfRangeException>(() => model.RecordStep(good, -1, 2), "tokens", "negative");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, 0, new float[2]), "loadBalanceLosses", "one per layer (3)");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, 0, [], [0f, float.NaN, 0f]), "routerZLosses", "routerZLosses[1] is NaN");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 1 << 20, 1 << 12), "topKExpertIds", "2^31 - 1");
        AssertRefused<ArgumentOutOfRangeException>(() => model.Layer(3), "layer", "0 to 2");
        AssertRefused<ArgumentOutOfRangeException>(() => model.Layer(-1), "layer", "0 to 2");
        AssertRefused<ArgumentException>(() => model.Summary(new int[7]), "expertRanks", "one per expert (8)");
        AssertRefused<ArgumentException>(() => model.Summary([0, 1, 2, 3, -1, 0, 1, 2]), "expertRanks", "expertRanks[4] is -1");
        AssertRefused<ArgumentException>(() => model.Summary([0, 1, 2, 3, 8, 0, 1, 2]), "expertRanks", "expertRanks[4] is 8");
        Assert.Equal(before, ModelSteps.Fingerprint(model));
    }

    [Fact]
    public void ADeviceStepRefusesViewsItCannotRead()
    {
        var accelerator = TestAccelerators.Require("cpu");
        var other = TestAccelerators.Require(TestAccelerators.CpuWithFourMultiprocessors);
        using var model = ModelRoutingStats.OnDevice(accelerator, Options);
        using var ids = accelerator.Allocate1D<int>(Options.Layers * 8);
        using var foreign = other.Allocate1D<int>(Options.Layers * 8);
        using var shortLosses = accelerator.Allocate1D<float>(2);
        var before = ModelSteps.Fingerprint(model);

        AssertRefused<ArgumentException>(() => model.RecordStep(foreign.View, 4, 2), "topKExpertIds", "not on this model's accelerator");
        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View, 4, 2, 0, default, shortLosses.View), "loadBalanceLosses", "3 floats");
        AssertRefused<ArgumentException>(() => model.RecordStep(ids.View.SubView(0, 20), 4, 2), "topKExpertIds", "need 24");
        Assert.Equal(before, ModelSteps.Fingerprint(model));
    }

    [Theory]
    [InlineData(0, 8, 1000, "Layers")]
    [InlineData(1025, 8, 1000, "Layers")]
    [InlineData(2, 0, 1000, "Experts")]
    [InlineData(2, 4097, 1000, "Experts")]
    [InlineData(2, 8, 0, "Window")]
    [InlineData(1024, 4096, 1000, "Window")]
    public void OptionsOutOfRangeAreRefusedByName(int layers, int experts, int window, string name)
    {
        var options = new ModelRoutingStatsOptions { Layers = layers, Experts = experts, Window = window };
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStats(options));
        Assert.Equal(name, error.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => ModelRoutingStats.OnDevice(TestAccelerators.Require("cpu"), options));
    }

    [Fact]
    public void LayerOptionsAreValidatedAsASingleLayer()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStats(Options with { ExpertCapacity = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ModelRoutingStats(Options with { UtilizationDecay = 1f }));
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void AStepOfNoTokensNeedsNoIds(string engine)
    {
        using var model = ModelRoutingStatsTests.Create(engine, Options);
        model.RecordStep(default(ArrayView<int>), 0, 2);
        model.RecordStep(ReadOnlySpan<int>.Empty, 0, 2);
        Assert.Equal(2UL, model.Summary().Steps);
        Assert.Equal(2UL, model.Layer(2).TotalRoutings);
        Assert.Equal(0UL, model.Layer(2).TotalTokens);
    }

    [Fact]
    public void ADisposedModelSaysSo()
    {
        var model = new ModelRoutingStats(Options);
        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => model.RecordStep(new int[24], 4, 2));
        Assert.Throws<ObjectDisposedException>(() => model.Layer(0));
        Assert.Throws<ObjectDisposedException>(() => model.Summary());
    }

    private static void AssertRefused<TException>(Action call, string parameter, string words)
        where TException : ArgumentException
    {
        var error = Assert.ThrowsAny<TException>(call);
        Assert.Equal(parameter, error.ParamName);
        // The first line: an ArgumentOutOfRangeException appends the actual value on a line of its own.
        Assert.Contains(words, error.Message.Split('\n')[0]);
    }
}
