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

    /// <summary>The options of a recording command (simulate, replay), added to it together.</summary>
    public sealed class Recording
    {
        private readonly Option<int?> _capacity = Capacity();
        private readonly Option<bool> _json = Json();
        private readonly Option<FileInfo?> _plot = Plot();
        private readonly Option<FileInfo?> _save = Save();
        private readonly Option<int?> _port = MetricsPort();
        private readonly Option<string> _host = MetricsHost();
        private readonly Option<double> _interval = ReportInterval();

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { _capacity, _json, _plot, _save, _port, _host, _interval })
            {
                command.Options.Add(option);
            }
        }

        public int? ExpertCapacity(ParseResult parse) => parse.GetValue(_capacity);

        public RecordingSession Session(ParseResult parse, int experts, string title) => new()
        {
            Options = new RoutingStatsOptions { Experts = experts, ExpertCapacity = parse.GetValue(_capacity) },
            Json = parse.GetValue(_json),
            Plot = parse.GetValue(_plot),
            Save = parse.GetValue(_save),
            MetricsPort = parse.GetValue(_port),
            MetricsHost = parse.GetValue(_host)!,
            ReportInterval = parse.GetValue(_interval),
            Title = title,
        };
    }
}
