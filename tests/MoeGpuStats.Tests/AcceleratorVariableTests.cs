using System.Text.Json;
using Microsoft.Extensions.Logging.Testing;
using MoeGpuStats.Serialization;
using MoeGpuStats.Tests.Support;

namespace MoeGpuStats.Tests;

/// <summary>
/// Tests that set a process-wide environment variable run alone, after the others: a
/// <c>MOEGS_ACCELERATOR=tpu</c> set for a moment would fail any engine another test creates meanwhile.
/// </summary>
[CollectionDefinition(nameof(ProcessEnvironment), DisableParallelization = true)]
public sealed class ProcessEnvironment;

/// <summary><see cref="RoutingStats.Create"/> and <see cref="RoutingStats.AcceleratorVariable"/>.</summary>
[Collection(nameof(ProcessEnvironment))]
public sealed class AcceleratorVariableTests
{
    [Fact]
    public void CreateHonoursTheAcceleratorVariable()
    {
        using var variable = new VariableScope();
        variable.Set("cpu");
        using (var cpu = RoutingStats.Create())
        {
            Assert.Equal("cpu", cpu.Backend);
        }

        variable.Set("managed");
        using (var managed = RoutingStats.Create())
        {
            Assert.Equal("managed", managed.Backend);
        }

        variable.Set("tpu");
        Assert.Throws<InvalidOperationException>(() => RoutingStats.Create());
    }

    /// <summary>Options out of range are refused naming the option whatever the variable says, before the variable is read.</summary>
    [Fact]
    public void CreateChecksTheOptionsBeforeTheVariable()
    {
        using var variable = new VariableScope();
        variable.Set("tpu");
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => RoutingStats.Create(new RoutingStatsOptions { Experts = 0 }));
        Assert.Equal("Experts", error.ParamName);
        var modelError = Assert.Throws<ArgumentOutOfRangeException>(() => ModelRoutingStats.Create(new ModelRoutingStatsOptions { Layers = 0, Experts = 4 }));
        Assert.Equal("Layers", modelError.ParamName);
    }

    /// <summary>The choice is logged once, naming the engine and the device; and the model's <c>Create</c> honours the variable too.</summary>
    [Fact]
    public void CreateLogsTheEngineChosenOnce()
    {
        using var variable = new VariableScope();
        variable.Set("managed");
        var logger = new FakeLogger();
        using (var stats = RoutingStats.Create(logger: logger))
        {
            Assert.Equal("managed", stats.Backend);
        }

        Assert.Equal(["Routing statistics run on the managed engine (managed)."], logger.Collector.GetSnapshot().Select(record => record.Message));

        var modelLogger = new FakeLogger();
        using (var model = ModelRoutingStats.Create(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 }, modelLogger))
        {
            Assert.Equal("managed", model.Backend);
        }

        Assert.Equal(["Model routing statistics run on the managed engine (managed)."], modelLogger.Collector.GetSnapshot().Select(record => record.Message));

        variable.Set("cpu");
        using (var cpu = ModelRoutingStats.Create(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 }))
        {
            Assert.Equal("cpu", cpu.Backend);
        }

        variable.Set("tpu");
        Assert.Throws<InvalidOperationException>(() => ModelRoutingStats.Create(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 }));
    }

    /// <summary>
    /// <see cref="ModelRoutingStats.Create(ModelRoutingStats, Microsoft.Extensions.Logging.ILogger?)"/> copies its source onto
    /// the engine the variable names (or the best), where the copy records on as the source; a source no device model can
    /// hold (read from a file without the ring) goes to the managed engine unless the variable names a device.
    /// </summary>
    [Fact]
    public void ACopyOfAModelGoesWhereTheVariableSays()
    {
        using var variable = new VariableScope();
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 3, UtilizationDecay = 0.5f };
        var steps = ModelSteps.Random(options.Layers, options.Experts, 2, 12, seed: 8);
        using var source = new ModelRoutingStats(options);
        Record(source, steps.Take(7));
        var before = JsonSerializer.Serialize(source);
        foreach (var engine in new[] { "cpu", "managed" })
        {
            variable.Set(engine);
            using var copy = ModelRoutingStats.Create(source);
            Assert.Equal(engine, copy.Backend);
            Record(copy, steps.Skip(7));
            using var whole = new ModelRoutingStats(options);
            Record(whole, steps);
            Assert.Equal(JsonSerializer.Serialize(whole), JsonSerializer.Serialize(copy));
        }

        Assert.Equal(before, JsonSerializer.Serialize(source));
        var folder = Directory.CreateTempSubdirectory("moegs-create-copy-").FullName;
        try
        {
            var path = Path.Combine(folder, "plain.json");
            RoutingStatsFile.Save(source, path);
            using var plain = RoutingStatsFile.LoadModel(path);
            variable.Set("");
            var logger = new FakeLogger();
            using (var copy = ModelRoutingStats.Create(plain, logger))
            {
                Assert.Equal("managed", copy.Backend);
                Assert.Equal(source.WindowLoad(), copy.WindowLoad());
                Assert.Throws<InvalidOperationException>(() => copy.RecordStep(new int[options.Layers * 2], 1, 2));
            }

            Assert.Equal(["Model routing statistics run on the managed engine (managed)."], logger.Collector.GetSnapshot().Select(record => record.Message));
            variable.Set("cpu");
            var refusal = Assert.Throws<ArgumentException>(() => ModelRoutingStats.Create(plain));
            Assert.Equal("source", refusal.ParamName);
            Assert.StartsWith("The model keeps its window's load but not its ring of steps", refusal.Message, StringComparison.Ordinal);

            // A merge whose window holds its longest part's 2 steps of its 4: no device model holds it.
            using var first = new ModelRoutingStats(options);
            using var second = new ModelRoutingStats(options);
            Record(first, steps.Take(2));
            Record(second, steps.Skip(2).Take(2));
            using var merged = ModelRoutingStats.Merge([first, second]);
            Assert.Contains("a device model's window holds min(window = 3, steps) steps", Assert.Throws<ArgumentException>(() => ModelRoutingStats.Create(merged)).Message, StringComparison.Ordinal);
            variable.Set("");
            using (var copy = ModelRoutingStats.Create(merged))
            {
                Assert.Equal("managed", copy.Backend);
                Record(copy, steps.Skip(4).Take(1));
                Record(merged, steps.Skip(4).Take(1));
                Assert.Equal(JsonSerializer.Serialize(merged), JsonSerializer.Serialize(copy));
            }

            variable.Set("tpu");
            Assert.Throws<InvalidOperationException>(() => ModelRoutingStats.Create(source));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    private static void Record(ModelRoutingStats model, IEnumerable<ModelSteps.Step> steps)
    {
        foreach (var step in steps)
        {
            model.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses, step.RouterZLosses);
        }
    }

    /// <summary>The variable, set by <see cref="Set"/> until the scope is disposed, then put back as it was.</summary>
    private sealed class VariableScope : IDisposable
    {
        private readonly string? _previous = Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable);

        public void Set(string value) => Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, value);

        public void Dispose() => Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, _previous);
    }
}
