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
        var previous = Environment.GetEnvironmentVariable(RoutingStats.AcceleratorVariable);
        try
        {
            Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, "cpu");
            using (var cpu = RoutingStats.Create())
            {
                Assert.Equal("cpu", cpu.Backend);
            }

            Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, "managed");
            using (var managed = RoutingStats.Create())
            {
                Assert.Equal("managed", managed.Backend);
            }

            Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, "tpu");
            Assert.Throws<InvalidOperationException>(() => RoutingStats.Create());
        }
        finally
        {
            Environment.SetEnvironmentVariable(RoutingStats.AcceleratorVariable, previous);
        }
    }
}
