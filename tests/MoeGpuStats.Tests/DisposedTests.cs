using System.Reflection;
using ILGPU;
using ILGPU.Runtime.CPU;
using Microsoft.Extensions.Logging.Abstractions;
using MoeGpuStats.Device;
using MoeGpuStats.Monitoring;
using MoeGpuStats.Telemetry;

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
        AssertRefuses(() => stats.RecordRouting(new RoutingDecision()), "This RoutingStats was disposed.");

        // A layer's handle is not disposed itself: its model's disposal is told before the argument too.
        var model = engine == "managed" ? new ModelRoutingStats(ModelOptions) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), ModelOptions);
        var layer = model.Layer(0);
        model.Dispose();
        AssertRefuses(() => layer.RecentLoadVarianceTrend(-1), "This ModelRoutingStats was disposed.");
        AssertRefuses(() => layer.RecordRouting([0, 1], tokens: -1, topK: 1), "This ModelRoutingStats was disposed.");
        AssertRefuses(() => layer.RecordRouting(new RoutingDecision()), "This ModelRoutingStats was disposed.");
    }

    /// <summary>
    /// A merge of many ranks names the disposed part (a model's layer: its model), on both engines and for models, before
    /// it exports any part.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void AMergeNamesItsDisposedPart(string engine)
    {
        RoutingStats Layer() => engine == "managed" ? new RoutingStats(LayerOptions) : RoutingStats.OnDevice(TestAccelerators.Require(engine), LayerOptions);
        ModelRoutingStats Model() => engine == "managed" ? new ModelRoutingStats(ModelOptions) : ModelRoutingStats.OnDevice(TestAccelerators.Require(engine), ModelOptions);
        using var live = Layer();
        var gone = Layer();
        gone.Dispose();
        using var liveModel = Model();
        var goneModel = Model();
        var goneLayer = goneModel.Layer(0);
        goneModel.Dispose();

        AssertRefuses(() => RoutingStats.Merge([live, live.Snapshot(), gone]), "parts[2] cannot be merged: This RoutingStats was disposed.");
        AssertRefuses(() => RoutingStats.Merge([live, goneLayer]), "parts[1] cannot be merged: This ModelRoutingStats was disposed.");
        AssertRefuses(() => ModelRoutingStats.Merge([liveModel, goneModel]), "parts[1] cannot be merged: This ModelRoutingStats was disposed.");
    }

    /// <summary>The seed's API over device statistics already disposed is refused at once, not at the first read.</summary>
    [Fact]
    public void OnDeviceRefusesDisposedDeviceStatistics()
    {
        var device = new DeviceRoutingStats(TestAccelerators.Require("cpu"), LayerOptions);
        device.Dispose();

        var error = Assert.Throws<ArgumentException>(() => RoutingStats.OnDevice(device));

        Assert.Equal("device", error.ParamName);
        Assert.Equal("device cannot be used: This DeviceRoutingStats was disposed. (Parameter 'device')", error.Message);
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

        foreach (var (refused, why) in new (Func<IDisposable>, string)[]
        {
            (() => new RoutingStatsMetrics(stats), "This RoutingStats was disposed."),
            (() => new RoutingStatsMetrics(layer), "This ModelRoutingStats was disposed."),
            (() => new ModelRoutingStatsMetrics(model), "This ModelRoutingStats was disposed."),
            (() => new PerformanceMonitor(TimeSpan.Zero, NullLogger.Instance, stats), "This RoutingStats was disposed."),
        })
        {
            var error = Assert.Throws<ArgumentException>(() => refused().Dispose());
            Assert.Equal("stats", error.ParamName);
            Assert.Equal($"stats cannot be used: {why} (Parameter 'stats')", error.Message);
        }
    }

    /// <summary>Statistics whose accelerator was disposed (their state freed with it) are refused the same way, saying so.</summary>
    [Fact]
    public void PublishersRefuseStatisticsWhoseAcceleratorWasDisposed()
    {
        using var context = Context.Create(builder => builder.CPU());
        var accelerator = context.GetCPUDevice(0).CreateAccelerator(context);
        using var stats = RoutingStats.OnDevice(accelerator, LayerOptions);
        using var model = ModelRoutingStats.OnDevice(accelerator, ModelOptions);
        using var device = new DeviceRoutingStats(accelerator, LayerOptions);
        var layer = model.Layer(1);
        accelerator.Dispose();

        const string Gone = "The accelerator 'CPUAccelerator' that holds these statistics was disposed, which freed their state; dispose the statistics before their accelerator.";
        foreach (var refused in new Func<IDisposable>[] { () => new RoutingStatsMetrics(stats), () => new RoutingStatsMetrics(layer), () => new ModelRoutingStatsMetrics(model) })
        {
            Assert.Equal($"stats cannot be used: {Gone} (Parameter 'stats')", Assert.Throws<ArgumentException>(() => refused().Dispose()).Message);
        }

        Assert.Equal($"device cannot be used: {Gone} (Parameter 'device')", Assert.Throws<ArgumentException>(() => RoutingStats.OnDevice(device)).Message);
        AssertRefuses(() => stats.RecordRoutingLatency(TimeSpan.FromMilliseconds(-1)), Gone);
        AssertRefuses(() => layer.RecentLoadVarianceTrend(-1), Gone);
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
        // Ids too short for the step: the disposal is told before the argument, as by the members the sweep calls.
        AssertRefuses(() => model.RecordStep([0, 1, 2], tokens: 2, topK: 1), "This ModelRoutingStats was disposed.");
        AssertRefuses(() => model.Layer(0), "This ModelRoutingStats was disposed.");
        AssertEveryMemberRefuses(layer, "This ModelRoutingStats was disposed.");
        AssertEveryMemberRefuses(ownLayer, "This RoutingStats was disposed.");
        AssertEveryMemberRefuses(read, "This read was disposed before its results were taken: begin another with BeginRead.");
    }

    /// <summary>
    /// Calls every public property, and every public method whose arguments a test can make, of
    /// <paramref name="disposed"/> with bad arguments (-1, NaN, a negative latency, a decision without experts):
    /// each must refuse with <paramref name="message"/>, the disposal told before the argument, unless it is one of
    /// <see cref="Answers"/>, which answer after a dispose.
    /// </summary>
    private static void AssertEveryMemberRefuses(object disposed, string message)
    {
        var type = disposed.GetType();
        var getters = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(property => property.GetIndexParameters().Length == 0)
            .Select(property => (Method: property.GetMethod!, Name: property.Name));
        var methods = type.GetMethods(BindingFlags.Public | BindingFlags.Instance)
            .Where(method => !method.IsSpecialName && method.DeclaringType != typeof(object) && method.Name != nameof(IDisposable.Dispose)
                && method.GetParameters().All(parameter => BadArguments.ContainsKey(parameter.ParameterType)))
            .Select(method => (Method: method, method.Name));
        var refused = 0;
        foreach (var (member, name) in getters.Concat(methods))
        {
            var arguments = member.GetParameters().Select(parameter => BadArguments[parameter.ParameterType]).ToArray();
            var answers = Answers.Contains(name);
            try
            {
                member.Invoke(disposed, arguments);
                Assert.True(answers, $"{type.Name}.{name} answered after Dispose");
            }
            catch (TargetInvocationException error)
            {
                Assert.False(answers, $"{type.Name}.{name} threw after Dispose: {error.InnerException}");
                var inner = Assert.IsType<ObjectDisposedException>(error.InnerException, exactMatch: false);
                Assert.True(message == inner.Message, $"{type.Name}.{name}: \"{inner.Message}\"");
                refused++;
            }
        }

        Assert.True(refused >= 3, $"{type.Name}: only {refused} members refused after Dispose");
    }

    /// <summary>What answers after a dispose: the options, names and sizes the host holds, for logs and messages written after it.</summary>
    private static readonly HashSet<string> Answers = ["Options", "Backend", "DeviceName", "Layers", "Experts", "ExpertCount", "MergedParts", "Accelerator", "Stream", "RecordKernelHasLaunchBounds"];

    /// <summary>A bad value of each parameter type the sweep can make.</summary>
    private static readonly Dictionary<Type, object?> BadArguments = new()
    {
        [typeof(int)] = -1,
        [typeof(int?)] = -1,
        [typeof(long)] = -1L,
        [typeof(float)] = float.NaN,
        [typeof(double)] = double.NaN,
        [typeof(bool)] = false,
        [typeof(TimeSpan)] = TimeSpan.FromMilliseconds(-1),
        [typeof(RoutingDecision)] = new RoutingDecision(),
        [typeof(IReadOnlyList<int>)] = Array.Empty<int>(),
        [typeof(int[])] = Array.Empty<int>(),
    };

    private static void AssertRefuses(Action call, string message) =>
        Assert.Equal(message, Assert.Throws<ObjectDisposedException>(call).Message);

    private static void AssertRefuses(Func<object> call, string message) => AssertRefuses(() => { _ = call(); }, message);
}
