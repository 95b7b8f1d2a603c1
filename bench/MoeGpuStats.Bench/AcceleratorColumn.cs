using System.Reflection;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Bench;

/// <summary>
/// The accelerator a device benchmark runs on: ILGPU's preferred device on this machine, which without a GPU is its
/// CPU accelerator, whose times say nothing of a GPU's. A table copied out of its log then names the device. A
/// benchmark runs on it where its class holds an <see cref="Accelerator"/> and its name does not start "Managed".
/// </summary>
internal sealed class AcceleratorColumn : IColumn
{
    private static readonly Lazy<string> Preferred = new(() =>
    {
        using var context = Context.Create(builder => builder.Default());
        var device = context.GetPreferredDevice(preferCPU: false);
        return $"{device.AcceleratorType} {device.Name}";
    });

    public string Id => nameof(AcceleratorColumn);

    public string ColumnName => "Accelerator";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Job;

    public int PriorityInCategory => 0;

    public bool IsNumeric => false;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "The ILGPU accelerator the benchmark runs on (this machine's preferred device); '-' where it runs on no accelerator";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) =>
        RunsOnAccelerator(benchmarkCase.Descriptor) ? Preferred.Value : "-";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;

    private static bool RunsOnAccelerator(Descriptor benchmark) =>
        !benchmark.WorkloadMethod.Name.StartsWith("Managed", StringComparison.Ordinal)
        && benchmark.Type.GetFields(BindingFlags.Instance | BindingFlags.NonPublic).Any(field => typeof(Accelerator).IsAssignableFrom(field.FieldType));
}
