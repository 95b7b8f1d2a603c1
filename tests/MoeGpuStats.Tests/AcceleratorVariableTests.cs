using Microsoft.Extensions.Logging.Testing;

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

    /// <summary>The variable, set by <see cref="Set"/> until the scope is disposed, then put back as it was.</summary>
    private sealed class VariableScope : IDisposable
    {
        private readonly string? _previous = Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable);

        public void Set(string value) => Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, value);

        public void Dispose() => Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, _previous);
    }
}
