using System.CommandLine;

namespace MoeGpuStats.Cli.Commands;

/// <summary>Options that several commands take, each made fresh for the command that owns it.</summary>
internal static class SharedOptions
{
    public static Option<bool> Json() => new("--json")
    {
        Description = "Print only the final snapshot, in the seed-compatible JSON shape, on standard output (reports go to standard error).",
    };

    public static Option<FileInfo?> Plot() => new("--plot")
    {
        Description = "Write expert load as a PNG: per-expert share of slots with the mean marked, and load variance over time.",
    };

    public static Option<FileInfo?> Save() => new("--save")
    {
        Description = "Save the final snapshot as JSON to this file (written atomically), for `report` and `merge`.",
    };

    public static Option<int?> MetricsPort() => new("--metrics-port")
    {
        Description = "Serve Prometheus metrics on this port at /metrics while running.",
    };

    public static Option<string> MetricsHost() => new("--metrics-host")
    {
        Description = "Host name to bind the metrics endpoint to ('+' for all interfaces).",
        DefaultValueFactory = _ => "localhost",
    };

    public static Option<double> ReportInterval() => new("--report-interval")
    {
        Description = "Seconds between periodic performance reports on the logger.",
        DefaultValueFactory = _ => 5.0,
    };

    public static Option<int?> Capacity() => new("--capacity")
    {
        Description = "Token slots per expert per batch; dropped slots are derived from it, and capacity statistics use it (default: the seed's 100).",
    };
}
