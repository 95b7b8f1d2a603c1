using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Cli.Commands;

/// <summary>How a model's metrics are published: the top-K depth, and whether every (layer, expert) series is.</summary>
internal readonly record struct ModelMetrics(int TopExperts, bool ExpertSeries, int? RecentSteps);

/// <summary>Options that several commands take, each made fresh for the command that owns it.</summary>
internal static class SharedOptions
{
    /// <summary>The longest report interval: a day (TimeSpan and the timers hold far more, but no run needs it).</summary>
    public const double MaxReportInterval = 86_400;

    /// <summary>--json, printing <paramref name="what"/> (the command's own JSON, in its words).</summary>
    public static Option<bool> Json(string what) => new("--json")
    {
        Description = $"Print JSON instead of the report, alone on standard output: {what}.",
    };

    /// <summary>--plot, drawing <paramref name="what"/> (the command's own picture, in its words).</summary>
    public static Option<FileInfo?> Plot(string what) => OutputFile(new Option<FileInfo?>("--plot")
    {
        CustomParser = result => ParseFile(result, "--plot"),
        Description = $"Write expert load as a picture (.png, or .jpg/.jpeg for JPEG): {what}.",
    }, OutputPath.PlotFormatProblem);

    /// <summary>--save, saving <paramref name="what"/>.</summary>
    public static Option<FileInfo?> Save(string what) => OutputFile(new Option<FileInfo?>("--save")
    {
        CustomParser = result => ParseFile(result, "--save"),
        Description = $"Save {what} as JSON to this file (written atomically), for `report`, `merge` and `plan`.",
    }, SnapshotFile.NameProblem);

    /// <summary>
    /// Refuses, while parsing, an output path that cannot be written (no such folder, a folder itself,
    /// a format we cannot write), so that a run never ends in a failed write; the message names the path as given.
    /// </summary>
    /// <param name="option">The option.</param>
    /// <param name="formatProblem">Why a name does not say a format the option writes (see <see cref="OutputPath.Problem"/>); null when any name goes.</param>
    public static T OutputFile<T>(T option, Func<string, string?>? formatProblem = null)
        where T : Option
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && !string.IsNullOrWhiteSpace(result.Tokens[^1].Value) && OutputPath.Problem(result.Tokens[^1].Value, formatProblem) is { } problem)
            {
                result.AddError($"{option.Name} {result.Tokens[^1].Value}: {problem}");
            }
        });
        return option;
    }

    /// <summary>
    /// Refuses, while parsing, an output file that is one of <paramref name="inputs"/>' files or that
    /// another output writes too (the run would overwrite what it reads, or one output would replace
    /// another). Names are compared by the file they reach (<see cref="FileIdentity"/>: through links
    /// and <c>..</c>); a name that does not parse is its symbol's own error.
    /// </summary>
    /// <param name="command">The command whose options these are.</param>
    /// <param name="inputs">The argument naming the files the command reads; null for none.</param>
    /// <param name="outputs">The options that name files it writes.</param>
    public static void DistinctFiles(Command command, Argument? inputs, params Option[] outputs)
    {
        command.Validators.Add(result =>
        {
            var read = Names(inputs is null ? null : result.GetResult(inputs)).Select(FileIdentity.OfInput).ToHashSet();
            var written = new Dictionary<string, Option>();
            foreach (var option in outputs)
            {
                if (Names(result.GetResult(option)) is not [.., var given])
                {
                    continue;
                }

                var file = FileIdentity.OfOutput(given);
                if (read.Contains(file))
                {
                    result.AddError($"{option.Name} {given}: is a file this command reads; give another name.");
                }
                else if (!written.TryAdd(file, option))
                {
                    result.AddError($"{option.Name} {given}: {written[file].Name} writes that file too; give another name.");
                }
            }
        });
    }

    /// <summary>The file names a symbol was given; names that are not paths are left out (the parser reports them).</summary>
    private static List<string> Names(SymbolResult? result) =>
        [.. (result?.Tokens ?? []).Select(token => token.Value).Where(name => !string.IsNullOrWhiteSpace(name) && !name.Contains('\0', StringComparison.Ordinal))];

    /// <summary>
    /// A file name in the user's words: an empty name, or one the file system cannot take (a NUL
    /// character), is a usage error naming <paramref name="name"/> (the argument or option).
    /// </summary>
    public static FileInfo? ParseFile(ArgumentResult result, string name) =>
        result.Tokens.Count == 0 ? null : ParseFile(result, name, result.Tokens[^1].Value);

    /// <summary>Every file name of an argument that takes several, as <see cref="ParseFile(ArgumentResult, string)"/>.</summary>
    public static FileInfo[] ParseFiles(ArgumentResult result, string name) =>
        [.. result.Tokens.Select(token => ParseFile(result, name, token.Value)).OfType<FileInfo>()];

    /// <summary>How the refusal of a mistyped option taken for an input file begins, which the program's error line prefers.</summary>
    public const string UnrecognizedOption = "Unrecognized option ";

    private static FileInfo? ParseFile(ArgumentResult result, string name, string text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            result.AddError($"{name} '{text}': the file name is empty.");
            return null;
        }

        // A mistyped option where a command takes files (merge takes any number) is parsed as an input file's
        // name: a usage error with a suggestion, as an unknown option is elsewhere, unless such a file exists.
        if (result.Parent is CommandResult && text.Length > 1 && text.StartsWith('-') && !File.Exists(text) && !Directory.Exists(text))
        {
            result.AddError($"{UnrecognizedOption}'{UnsafeText.Escaped(text)}', and no file of that name.");
            return null;
        }

        try
        {
            return new FileInfo(text);
        }
        catch (Exception exception) when (exception is ArgumentException or NotSupportedException or PathTooLongException)
        {
            result.AddError($"{name} '{UnsafeText.Escaped(text)}': not a file name ({ErrorText.Clause(exception)}).");
            return null;
        }
    }

    public static Option<int?> MetricsPort() => WholeNumber<int?>(
        new("--metrics-port") { Description = "Serve Prometheus metrics on this port at /metrics while running." },
        1,
        65_535,
        "a TCP port");

    public static Option<string> MetricsHost()
    {
        var option = new Option<string>("--metrics-host")
        {
            Description = "Host name to bind the metrics endpoint to: localhost (the default), this machine's name or address (IPv4 or IPv6), or '+' for all interfaces.",
            DefaultValueFactory = _ => "localhost",
        };
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && Output.MetricsHost.Problem(result.Tokens[^1].Value) is { } problem)
            {
                result.AddError($"{option.Name} {Given(result.Tokens[^1].Value)}: {problem}.");
            }
        });
        return option;
    }

    public static Option<double> ReportInterval() => Number(
        new("--report-interval")
        {
            Description = $"Seconds between periodic reports on standard error while recording, spaced further where a report is slow (reports take at most a tenth of the run); 0 turns them off (0 to {MaxReportInterval:N0}).",
            DefaultValueFactory = _ => 5.0,
        },
        value => value is >= 0 and <= MaxReportInterval,
        $"give the seconds between periodic reports, from 0 (none) to {MaxReportInterval:N0} (a day)");

    public static Option<int?> Capacity() => WholeNumber<int?>(
        new("--capacity")
        {
            Description = "Token slots per expert per batch (of a model: per layer and step); slots over it are counted as dropped, and the report shows capacity figures (none without it).",
        },
        1,
        int.MaxValue,
        "slots per expert per batch (of a model: per layer and step)");

    /// <summary>
    /// Parses a whole number in the user's words: anything else, or a value outside
    /// [<paramref name="min"/>, <paramref name="max"/>], is a usage error naming the option and the value.
    /// </summary>
    public static Option<T> WholeNumber<T>(Option<T> option, long min, long max, string what)
    {
        option.CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
            if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
            {
                return (T)(object)(int)value;
            }

            result.AddError($"{option.Name} {Given(text)}: give {what}, a whole number from {min:N0} to {max:N0}.");
            return default!;
        };
        return option;
    }

    /// <summary>
    /// An option's value as a message quotes it: in quotes where it is empty or holds a blank (<c>--experts ' 5'</c>,
    /// not <c>--experts  5</c>, whose blank the reader cannot see), else as given.
    /// </summary>
    public static string Given(string value) => value.Length == 0 || value.Any(char.IsWhiteSpace) ? $"'{value}'" : value;

    /// <summary>Parses a number (invariant culture); NaN, infinities and values <paramref name="allowed"/> refuses are usage errors.</summary>
    public static Option<double> Number(Option<double> option, Func<double, bool> allowed, string rule)
    {
        option.CustomParser = result =>
        {
            var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value) && allowed(value))
            {
                return value;
            }

            result.AddError($"{option.Name} {Given(text)}: {rule}.");
            return 0;
        };
        return option;
    }

    /// <summary>
    /// The options of a recording command (simulate, replay), added to it together; their help says
    /// what they do for a whole model too.
    /// </summary>
    /// <param name="models">When a recording is a whole model's, in the help's words (<c>a trace with layers</c>, <c>--layers</c>).</param>
    public sealed class Recording(string models)
    {
        private readonly Option<int?> _capacity = Capacity();
        private readonly Option<bool> _json = Json(
            $"one layer's final snapshot, in the seed-compatible shape; for {models}, the model's balance per layer and counts (--save writes the model's snapshot). Standard error names the engine and the files written");

        private readonly Option<FileInfo?> _plot = Plot(
            $"for one layer, each expert's share of tokens with the mean marked and the load variance per batch; for {models}, a layers x experts heat map of load share and, over two steps or more, each layer's balancedness over the steps");

        private readonly Option<FileInfo?> _save = Save($"the final snapshot (one layer's, or for {models} the whole model's)");
        private readonly Option<int?> _port = MetricsPort();
        private readonly Option<string> _host = MetricsHost();
        private readonly Option<double> _interval = ReportInterval();
        private readonly Option<bool> _serveAfter = new("--serve-after")
        {
            Description = "With --metrics-port: keep serving the final state after the run, so that a scraper sees it, until Ctrl-C or SIGTERM (a run such a signal stops early ends without serving after it).",
        };

        /// <summary>The files the recording options write, for <see cref="DistinctFiles"/>.</summary>
        public Option<FileInfo?>[] Outputs => [_plot, _save];

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { _capacity, _json, _plot, _save, _port, _host, _interval, _serveAfter })
            {
                command.Options.Add(option);
            }
        }

        /// <summary>Why the options cannot go together, or null.</summary>
        public string? Problem(ParseResult parse) =>
            parse.GetValue(_port) is not null ? null
            : parse.GetValue(_serveAfter) ? "--serve-after: needs --metrics-port, whose endpoint it keeps serving."
            : parse.GetResult(_host) is { Implicit: false } ? $"--metrics-host {UnsafeText.Escaped(parse.GetValue(_host)!)}: places the endpoint of --metrics-port, which was not given."
            : null;

        /// <summary>A replay of a whole model with these options; <paramref name="window"/>: how an error names its window (<see cref="ModelWindow.Named"/>).</summary>
        public ModelReplay Model(ParseResult parse, CliConsole console, ModelRoutingStatsOptions shape, string window, FileInfo? windowLoad, int? epSize, int? layersShown, ModelMetrics metrics, string title, string timed, int stepsSkipped = 0) => new()
        {
            EpSize = epSize,
            StepsSkipped = stepsSkipped,
            LayersShown = layersShown ?? ModelReport.ShownLayers,
            Console = console,
            Options = shape with { ExpertCapacity = parse.GetValue(_capacity) },
            WindowNamed = window,
            Json = parse.GetValue(_json),
            WindowLoad = windowLoad,
            Plot = parse.GetValue(_plot),
            Save = parse.GetValue(_save),
            MetricsPort = parse.GetValue(_port),
            MetricsHost = parse.GetValue(_host)!,
            MetricsTopExperts = metrics.TopExperts,
            MetricsExpertSeries = metrics.ExpertSeries,
            MetricsRecentSteps = metrics.RecentSteps,
            ServeAfter = parse.GetValue(_serveAfter),
            ReportInterval = parse.GetValue(_interval),
            Title = title,
            Timed = timed,
        };

        /// <summary>--metrics-port: null when not given.</summary>
        public Option<int?> Port => _port;

        /// <summary>Why the model's metrics options were given without an endpoint to serve them, or null.</summary>
        public string? ModelMetricsProblem(ParseResult parse, Option given) =>
            parse.GetValue(_port) is null ? $"{given.Name}: shapes the metrics of --metrics-port, which was not given." : null;

        public RecordingSession Session(ParseResult parse, CliConsole console, int experts, string title, string timed) => new()
        {
            Console = console,
            Options = new RoutingStatsOptions { Experts = experts, ExpertCapacity = parse.GetValue(_capacity) },
            Json = parse.GetValue(_json),
            Plot = parse.GetValue(_plot),
            Save = parse.GetValue(_save),
            MetricsPort = parse.GetValue(_port),
            MetricsHost = parse.GetValue(_host)!,
            ReportInterval = parse.GetValue(_interval),
            ServeAfter = parse.GetValue(_serveAfter),
            Title = title,
            Timed = timed,
        };
    }
}
