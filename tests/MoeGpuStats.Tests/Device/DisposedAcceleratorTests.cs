using ILGPU;
using ILGPU.Runtime.CPU;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// Statistics whose accelerator (or caller-given stream) was disposed first: ILGPU freed their
/// buffers with it, so every call is refused with <see cref="ObjectDisposedException"/> that says so
/// (on the CPU accelerator the next copy or kernel ended the process), and Dispose still succeeds.
/// </summary>
public sealed class DisposedAcceleratorTests
{
    private static readonly RoutingStatsOptions Options = new() { Experts = 4 };

    [Fact]
    public void AnEngineWhoseAcceleratorWasDisposedRefusesEveryCall()
    {
        using var context = Context.Create(builder => builder.CPU());
        var accelerator = context.GetCPUDevice(0).CreateAccelerator(context);
        var stats = new DeviceRoutingStats(accelerator, Options);
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        accelerator.Dispose();

        AssertGone(() => stats.RecordRouting([0, 1], tokens: 1, topK: 2));
        AssertGone(() => stats.RecordRouting(new RoutingDecision { ExpertCapacities = [1, 1, 0, 0], TotalTokens = 1 }));
        AssertGone(() => stats.UtilizationCv());
        AssertGone(() => stats.MostUtilizedExpert());
        AssertGone(() => stats.Snapshot());
        AssertGone(stats.Reset);
        stats.Dispose();
        stats.Dispose();
    }

    [Fact]
    public void AFacadeWhoseAcceleratorWasDisposedRefusesEveryCall()
    {
        using var context = Context.Create(builder => builder.CPU());
        var accelerator = context.GetCPUDevice(0).CreateAccelerator(context);
        var stats = RoutingStats.OnDevice(accelerator, Options);
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        accelerator.Dispose();

        AssertGone(() => stats.RecordRouting([0, 1], tokens: 1, topK: 2));
        AssertGone(() => _ = stats.TotalRoutings);
        AssertGone(() => _ = stats.ExpertTokenCounts);
        AssertGone(() => stats.Snapshot());
        stats.Dispose();
    }

    [Fact]
    public void AModelWhoseAcceleratorWasDisposedRefusesEveryCallAndSoDoItsLayers()
    {
        using var context = Context.Create(builder => builder.CPU());
        var accelerator = context.GetCPUDevice(0).CreateAccelerator(context);
        var model = ModelRoutingStats.OnDevice(accelerator, new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 3 });
        model.RecordStep([0, 1, 2, 3], tokens: 2, topK: 1);
        var layer = model.Layer(1);
        accelerator.Dispose();

        AssertGone(() => model.RecordStep([0, 1, 2, 3], tokens: 2, topK: 1));
        AssertGone(() => model.WindowLoad());
        AssertGone(() => model.Summary());
        AssertGone(() => model.Snapshot());
        AssertGone(model.Reset);
        AssertGone(() => _ = layer.ExpertTokenCounts);
        AssertGone(() => layer.UtilizationCv());
        model.Dispose();
    }

    [Fact]
    public void AnEngineWhoseCallerStreamWasDisposedRefusesEveryCall()
    {
        using var context = Context.Create(builder => builder.CPU());
        using var accelerator = context.GetCPUDevice(0).CreateAccelerator(context);
        var stream = accelerator.CreateStream();
        var stats = new DeviceRoutingStats(accelerator, Options, stream);
        var model = ModelRoutingStats.OnDevice(accelerator, new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 3 }, stream);
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        stream.Dispose();

        var error = Assert.Throws<ObjectDisposedException>(() => stats.RecordRouting([0, 1], tokens: 1, topK: 2));
        Assert.Equal("The stream these statistics are ordered on was disposed; dispose the statistics before the stream given to them.", error.Message);
        Assert.Throws<ObjectDisposedException>(() => model.RecordStep([0, 1, 2, 3], tokens: 2, topK: 1));
        stats.Dispose();
        model.Dispose();
    }

    /// <summary>A constructor refuses a disposed accelerator or stream, and a stream of another accelerator, naming the argument (it built the state on them silently).</summary>
    [Fact]
    public void ConstructorsRefuseADisposedAcceleratorOrStreamAndAStreamOfAnotherAccelerator()
    {
        using var context = Context.Create(builder => builder.CPU());
        var gone = context.GetCPUDevice(0).CreateAccelerator(context);
        gone.Dispose();
        using var accelerator = context.GetCPUDevice(0).CreateAccelerator(context);
        using var other = context.GetCPUDevice(0).CreateAccelerator(context);
        using var otherStream = other.CreateStream();
        var goneStream = accelerator.CreateStream();
        goneStream.Dispose();
        var modelOptions = new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 3 };

        AssertRefused("accelerator", "was disposed", () => new DeviceRoutingStats(gone, Options));
        AssertRefused("accelerator", "was disposed", () => ModelRoutingStats.OnDevice(gone, modelOptions));
        AssertRefused("stream", "stream was disposed", () => new DeviceRoutingStats(accelerator, Options, goneStream));
        AssertRefused("stream", "stream was disposed", () => ModelRoutingStats.OnDevice(accelerator, modelOptions, goneStream));
        AssertRefused("stream", $"stream belongs to another '{other.Name}' accelerator object than the one given;", () => new DeviceRoutingStats(accelerator, Options, otherStream));
        AssertRefused("stream", $"stream belongs to another '{other.Name}' accelerator object than the one given;", () => ModelRoutingStats.OnDevice(accelerator, modelOptions, otherStream));

        using var own = accelerator.CreateStream();
        using var stats = new DeviceRoutingStats(accelerator, Options, own);
        using var model = ModelRoutingStats.OnDevice(accelerator, modelOptions, accelerator.DefaultStream);
    }

    private static void AssertRefused(string argument, string says, Func<object> create)
    {
        var error = Assert.Throws<ArgumentException>(() => (create() as IDisposable)?.Dispose());
        Assert.Equal(argument, error.ParamName);
        Assert.Contains(says, error.Message);
    }

    private static void AssertGone(Action call)
    {
        var error = Assert.Throws<ObjectDisposedException>(call);
        Assert.Equal("The accelerator 'CPUAccelerator' that holds these statistics was disposed, which freed their state; dispose the statistics before their accelerator.", error.Message);
    }
}
