using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using Microsoft.Extensions.Logging;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// The record kernel's launch bounds cannot go missing silently: this ILGPU has what loading them
/// needs, the engine says whether its kernel has them and warns where CUDA runs it without, and
/// PTX that bounds its launches already gets no second set.
/// </summary>
public sealed class LaunchBoundsTests
{
    [Fact]
    public void ThisIlgpuHasTheInternalsThatLoadingLaunchBoundsNeeds()
    {
        Assert.True(CudaLaunchBounds.Supported, $"This ILGPU lacks {CudaLaunchBounds.Missing}.");
        Assert.Equal("", CudaLaunchBounds.Missing);
    }

    [Theory]
    [InlineData(".maxntid 256, 1, 1")]
    [InlineData(".reqntid 128, 1, 1")]
    [InlineData(".minnctapersm 4")]
    [InlineData(".maxnctapersm 4")]
    [InlineData(".maxnreg 40")]
    public void PtxWhoseEntryBoundsItsLaunchesGetsNoMoreDirectives(string directive)
    {
        // The query kernel, which ILGPU compiles without launch bounds.
        var ptx = KernelPtx.Generate(nameof(UtilizationQueryKernel), CudaArchitecture.SM_90, CudaInstructionSet.ISA_78);
        var body = ptx.IndexOf("\n{", ptx.IndexOf(".entry ", StringComparison.Ordinal), StringComparison.Ordinal);
        var error = Assert.Throws<ArgumentException>(() => CudaLaunchBounds.Add(ptx.Insert(body, "\n" + directive), 256, 2048));
        Assert.Equal("ptx", error.ParamName);
        Assert.Contains(directive.Split(' ')[0], error.Message, StringComparison.Ordinal);
        Assert.Contains(".maxntid 256, 1, 1", CudaLaunchBounds.Add(ptx, 256, 2048), StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(TestAccelerators.Kinds), MemberType = typeof(TestAccelerators))]
    public void TheEngineSaysWhetherItsRecordKernelHasLaunchBoundsAndWarnsOnlyWhereCudaRunsItWithout(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var logger = new RecordingLogger();
        using var engine = new DeviceRoutingStats(device, new RoutingStatsOptions { Experts = 4 }, stream: null, logger);
        var onCuda = device.AcceleratorType == AcceleratorType.Cuda;
        Assert.Equal(onCuda && CudaLaunchBounds.Supported, engine.RecordKernelHasLaunchBounds);
        var warnings = logger.Entries.Where(entry => entry.Id.Name == "LaunchBoundsUnavailable").ToArray();
        Assert.Equal(onCuda && !engine.RecordKernelHasLaunchBounds ? 1 : 0, warnings.Length);
        Assert.All(warnings, entry => Assert.Equal((2, LogLevel.Warning), (entry.Id.Id, entry.Level)));
    }

    /// <summary>Keeps every entry logged to it.</summary>
    private sealed class RecordingLogger : ILogger
    {
        public List<(EventId Id, LogLevel Level, string Message)> Entries { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((eventId, logLevel, formatter(state, exception)));
    }
}
