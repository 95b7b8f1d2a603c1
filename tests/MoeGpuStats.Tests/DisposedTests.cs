using System.Reflection;
using Microsoft.Extensions.Logging.Abstractions;
using MoeGpuStats.Device;
using MoeGpuStats.Monitoring;
using MoeGpuStats.Telemetry;
using MoeGpuStats.Tests.Support;

namespace MoeGpuStats.Tests;

/// <summary>
/// Every public call on a disposed object is refused on one line that names the object (.NET's own form
/// adds "Object name: '…'." on a second line), on the managed engine and on a device.
/// </summary>
public sealed class DisposedTests
{
    private static readonly RoutingStatsOptions LayerOptions = new() { Experts = 4 };
    private static readonly ModelRoutingStatsOptions ModelOptions = new() { Layers = 2, Experts = 4, Window = 3 };

    public static TheoryData<string> Engines => ["managed", "cpu"];

    [Theory]
    [MemberData(nameof(Engines))]
    public void ARoutingStatsSaysItWasDisposedOnOneLine(string engine)
    {
        var stats = engine == "managed" ? new RoutingStats(LayerOptions) : RoutingStats.OnDevice(TestAccelerators.Require(engine), LayerOptions);
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        stats.Dispose();

        AssertEveryMemberRefuses(stats, "This RoutingStats was disposed.");
        AssertRefuses(() => stats.RecordRouting([0, 1], tokens: 1, topK: 2), "This RoutingStats was disposed.");
        AssertRefuses(() => stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(1)), "This RoutingStats was disposed.");
    }

    /// <summary>Disposal is told before a bad argument: the object, not the argument, is what the caller must change.</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void DisposalIsToldBeforeABadArgument(string engine)
    {
        var stats = engine == "managed" ? new RoutingStats(LayerOptions) : RoutingStats.OnDevice(TestAccelerators.Require(engine), LayerOptions);
        stats.Dispose();

        AssertRefuses(() => stats.RecentLoadVarianceTrend(-1), "This RoutingStats was disposed.");
        AssertRefuses(() => stats.RecordRouting([0, 1], tokens: -1, topK: 0), "This RoutingStats was disposed.");
        AssertRefuses(() => stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(-1)), "This RoutingStats was disposed.");
    }

    /// <summary>The seed's API over device statistics already disposed is refused at once, not at the first read.</summary>
    [Fact]
    public void OnDeviceRefusesDisposedDeviceStatistics()
    {
        var device = new DeviceRoutingStats(TestAccelerators.Require("cpu"), LayerOptions);
        device.Dispose();

        var error = Assert.Throws<ArgumentException>(() => RoutingStats.OnDevice(device));

        Assert.Equal("device", error.ParamName);
        Assert.Equal("device was disposed; pass DeviceRoutingStats that are not. (Parameter 'device')", error.Message);
    }

    /// <summary>Publishers and monitors refuse statistics already disposed (or a layer of a disposed model) at once, naming the argument: their series would stay empty.</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void PublishersRefuseDisposedStatistics(string engine)
    {
        var stats = engine == "managed" ? new RoutingStats(LayerOptions) : RoutingStats.OnDevice(TestAccelerators.Require(engine), LayerOptions);
        var model = engine == "managed" ? new ModelRoutingStats(ModelOptions) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), ModelOptions);
        var layer = model.Layer(0);
        stats.Dispose();
        model.Dispose();

        foreach (var refused in new Func<IDisposable>[]
        {
            () => new RoutingStatsMetrics(stats),
            () => new RoutingStatsMetrics(layer),
            () => new ModelRoutingStatsMetrics(model),
            () => new PerformanceMonitor(TimeSpan.Zero, NullLogger.Instance, stats),
        })
        {
            var error = Assert.Throws<ArgumentException>(() => refused().Dispose());
            Assert.Equal("stats", error.ParamName);
            Assert.Equal("stats was disposed; pass statistics that are not. (Parameter 'stats')", error.Message);
        }
    }

    /// <summary>What names the engine answers after a dispose, for a log line written in a <c>finally</c>, as <c>Options</c> does.</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void TheEnginesNameAnswersAfterADispose(string engine)
    {
        var model = engine == "managed" ? new ModelRoutingStats(ModelOptions) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), ModelOptions);
        var stats = engine == "managed" ? new RoutingStats(LayerOptions) : RoutingStats.OnDevice(TestAccelerators.Require(engine), LayerOptions);
        var (modelNames, statsNames) = ((model.Backend, model.DeviceName), (stats.Backend, stats.DeviceName));
        model.Dispose();
        stats.Dispose();

        Assert.Equal(engine, model.Backend);
        Assert.Equal(modelNames, (model.Backend, model.DeviceName));
        Assert.Equal(statsNames, (stats.Backend, stats.DeviceName));
        Assert.Equal(ModelOptions, model.Options);
    }

    [Fact]
    public void ADeviceRoutingStatsSaysItWasDisposedOnOneLine()
    {
        var stats = new DeviceRoutingStats(TestAccelerators.Require("cpu"), LayerOptions);
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        stats.Dispose();

        AssertEveryMemberRefuses(stats, "This DeviceRoutingStats was disposed.");
        AssertRefuses(() => stats.RecordRouting([0, 1], tokens: 1, topK: 2), "This DeviceRoutingStats was disposed.");
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void AModelItsLayersAndItsReadsSayTheyWereDisposedOnOneLine(string engine)
    {
        var model = engine == "managed" ? new ModelRoutingStats(ModelOptions) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), ModelOptions);
        model.RecordStep([0, 1, 2, 3], tokens: 2, topK: 1);
        var layer = model.Layer(1);
        var ownLayer = model.Layer(0);
        var read = model.BeginRead();
        read.Dispose();
        ownLayer.Dispose();
        model.Dispose();

        AssertEveryMemberRefuses(model, "This ModelRoutingStats was disposed.");
        AssertRefuses(() => model.RecordStep([0, 1, 2, 3], tokens: 2, topK: 1), "This ModelRoutingStats was disposed.");
        AssertRefuses(() => model.Layer(0), "This ModelRoutingStats was disposed.");
        AssertEveryMemberRefuses(layer, "This ModelRoutingStats was disposed.");
        AssertEveryMemberRefuses(ownLayer, "This RoutingStats was disposed.");
        AssertEveryMemberRefuses(read, "This read was disposed before its results were taken: begin another with BeginRead.");
    }

    /// <summary>
    /// Calls every public property and parameterless method of <paramref name="disposed"/> (those that still
    /// answer, such as <c>Options</c>, aside) and checks each refusal's whole message.
    /// </summary>
    private static void AssertEveryMemberRefuses(object disposed, string message)
    {
        var type = disposed.GetType();
        var getters = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(property => property.GetIndexParameters().Length == 0)
            .Select(property => property.GetMethod!);
        var methods = type.GetMethods(BindingFlags.Public | BindingFlags.Instance)
            .Where(method => method.GetParameters().Length == 0 && !method.IsSpecialName && method.DeclaringType != typeof(object) && method.Name != nameof(IDisposable.Dispose));
        var refused = 0;
        foreach (var member in getters.Concat(methods))
        {
            try
            {
                member.Invoke(disposed, null);
            }
            catch (TargetInvocationException error) when (error.InnerException is ObjectDisposedException inner)
            {
                Assert.True(message == inner.Message, $"{type.Name}.{member.Name}: \"{inner.Message}\"");
                refused++;
            }
        }

        Assert.True(refused >= 3, $"{type.Name}: only {refused} members refused after Dispose");
    }

    private static void AssertRefuses(Action call, string message) =>
        Assert.Equal(message, Assert.Throws<ObjectDisposedException>(call).Message);

    private static void AssertRefuses(Func<object> call, string message) => AssertRefuses(() => { _ = call(); }, message);
}
