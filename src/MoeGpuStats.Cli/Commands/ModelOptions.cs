using System.CommandLine;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// The options of a whole model's recording, which <c>replay</c> (a trace with layers) and <c>simulate</c>
/// (<c>--layers</c>) share: the sliding window, the window load for <c>plan</c>, and the shape of the
/// model's metrics. Each command makes its own.
/// </summary>
/// <param name="condition">When the options apply, as the help says it: <c>With layers</c>, <c>With --layers</c>.</param>
internal sealed class ModelOptions(string condition)
{
    /// <summary>The most series a model's endpoint publishes: a scrape of more takes longer than a scraper waits, and memory to match.</summary>
    private const int MaxSeries = 250_000;

    /// <summary>--window's default: the library's, as vLLM's and SGLang's rings.</summary>
    private static readonly int DefaultWindow = new ModelRoutingStatsOptions().Window;

    public Option<int> Window { get; } = SharedOptions.WholeNumber(
        new Option<int>("--window") { Description = $"{condition}: steps in the sliding window of expert load (the window figures and --window-load); without --window, {DefaultWindow:N0} steps, or fewer where a ring of {DefaultWindow:N0} would pass {DefaultRingBytes >> 30} GiB.", DefaultValueFactory = _ => DefaultWindow },
        1,
        int.MaxValue,
        "the steps in the window");

    public Option<FileInfo?> WindowLoad { get; } = SharedOptions.OutputFile(
        new Option<FileInfo?>("--window-load") { CustomParser = result => SharedOptions.ParseFile(result, "--window-load"), Description = $"{condition}: write the window's expert load, [layers, experts] int64, as .npy or .json (by the name), for `moegs plan`." },
        WindowLoadFile.FormatProblem);

    public Option<int?> TopExperts { get; } = SharedOptions.WholeNumber(
        new Option<int?>("--metrics-top-experts") { Description = $"{condition} and --metrics-port: the hottest and coldest experts published per layer, 0 to the experts (default {ModelRoutingStatsMetrics.DefaultTopExperts}, or the experts when fewer)." },
        0,
        RoutingStatsOptions.MaxDeviceExperts,
        "the experts per layer to rank");

    public Option<bool> ExpertSeries { get; } = new("--metrics-expert-series")
    {
        Description = $"{condition} and --metrics-port: publish two series per (layer, expert) as well, the slots since the start and in the window, 2 × layers × experts of them (29,696 for DeepSeek-V3); off by default.",
    };

    public Option<int?> EpSize { get; } = EpSizeOption($"{condition}: also report the balance", "; with --metrics-port, publish it too (moegpustats_moegs_model_ep_balancedness_token_weighted and _min)");

    public Option<int?> LayersShown { get; } = LayersShownOption(condition);

    public Option<int?> RecentSteps { get; } = SharedOptions.WholeNumber(
        new Option<int?>("--metrics-recent-steps") { Description = $"{condition} and --metrics-port: publish the balance over the window's newest N steps as well (moegpustats_moegs_model_recent_* and moegpustats_moegs_layer_recent_balancedness, 4 + layers series), 1 to --window; SGLang logs the last 10, 100 and 1,000 passes. One N per run (the series carry no label for it); off by default." },
        1,
        int.MaxValue,
        "the window's newest steps to publish (at most --window)");

    /// <summary>
    /// <c>--ep-size</c>: the balance over N expert-parallel ranks that hold the experts in order, which
    /// <paramref name="lead"/> says when to report (ending in the balance's noun) and <paramref name="tail"/> ends.
    /// </summary>
    public static Option<int?> EpSizeOption(string lead, string tail = "") => SharedOptions.WholeNumber(
        new Option<int?>("--ep-size") { Description = $"{lead} over N expert-parallel ranks that hold the experts in order, experts / N each: vLLM's placement before a rebalance, over whose ranks vLLM logs its balancedness{tail}. N divides the experts." },
        1,
        RoutingStatsOptions.MaxDeviceExperts,
        "expert-parallel ranks (a divisor of the experts)");

    /// <summary><c>--layers-shown</c>: the layers a model's text report lists per span, worst first; <paramref name="lead"/> says when it applies.</summary>
    public static Option<int?> LayersShownOption(string lead) => SharedOptions.WholeNumber(
        new Option<int?>("--layers-shown") { Description = $"{lead}: the layers the report lists per span, worst first, 0 for every layer (default {ModelReport.ShownLayers}; --json lists every layer)." },
        0,
        int.MaxValue,
        "the layers to list (0 for every layer)");

    /// <summary>Why --ep-size cannot hold <paramref name="experts"/> experts evenly; null when it can or was not given.</summary>
    public string? EpSizeProblem(ParseResult parse, int experts) =>
        parse.GetValue(EpSize) is { } ranks ? EpBalance.Problem(ranks, experts) : null;

    /// <summary>Adds these options to <paramref name="command"/>, as <see cref="SharedOptions.Recording.AddTo"/> adds the recording's.</summary>
    public void AddTo(Command command)
    {
        foreach (var option in (Option[])[Window, WindowLoad, EpSize, LayersShown, TopExperts, ExpertSeries, RecentSteps])
        {
            command.Options.Add(option);
        }
    }

    /// <summary>The first of these options given for a recording of one layer, with why it is a model's; null when none was.</summary>
    public (string Option, string Why)? GivenForOneLayer(ParseResult parse) =>
        parse.GetValue(WindowLoad) is not null ? ("--window-load", "the window load is a model's, [layers, experts] (one router's load: --save a snapshot, which plan reads)")
        : parse.GetValue(EpSize) is not null ? ("--ep-size", "the balance over expert-parallel ranks is a model's, across its layers")
        : parse.GetValue(LayersShown) is { } shown ? ($"--layers-shown {shown}", "the report's list of layers is a model's")
        : MetricsOption(parse) is { } metrics ? (metrics.Name, metrics == RecentSteps
            ? "publishes the balance over a model's sliding window (one layer's metrics have none)"
            : "shapes a whole model's metrics (one layer's metrics publish every expert)")
        : WindowGiven(parse) ? ($"--window {parse.GetValue(Window)}", "the sliding window of expert load is a model's")
        : null;

    /// <summary>The metrics option given, <c>--metrics-top-experts</c> before <c>--metrics-expert-series</c> before <c>--metrics-recent-steps</c>; null for none.</summary>
    public Option? MetricsOption(ParseResult parse) =>
        parse.GetResult(TopExperts) is not null ? TopExperts
        : parse.GetValue(ExpertSeries) ? ExpertSeries
        : parse.GetResult(RecentSteps) is not null ? RecentSteps
        : null;

    public ModelMetrics Metrics(ParseResult parse) =>
        new(parse.GetValue(TopExperts) ?? ModelRoutingStatsMetrics.DefaultTopExperts, parse.GetValue(ExpertSeries), parse.GetValue(RecentSteps));

    /// <summary>
    /// The most memory the ring of a window chosen without --window takes: 1,000 steps of today's largest models
    /// (64 layers of 1,024 experts: 262 MB) fit, and a small trace that claims many layers and experts cannot
    /// make a default of gigabytes. --window given goes up to the engine's limit.
    /// </summary>
    public const long DefaultRingBytes = 1L << 30;

    /// <summary>
    /// The window, how an error names it, and why it holds fewer steps than the run is to record, where it does: --window as
    /// given; by default 1,000 steps, or where the ring of 1,000 would pass <see cref="DefaultRingBytes"/> the steps
    /// recorded, at most the longest window within it: a window of every step gives the same figures, and a few
    /// steps of a large model need no more.
    /// </summary>
    public ModelWindow WindowFor(ParseResult parse, int layers, int experts, int steps)
    {
        var value = parse.GetValue(Window);
        if (WindowGiven(parse))
        {
            return new(value, $"--window {value}", null);
        }

        var stepBytes = (long)layers * experts * sizeof(uint);
        var longest = (int)Math.Max(1, DefaultRingBytes / stepBytes);
        if (value <= longest)
        {
            return new(value, $"the window of {Counted.Of(value, "step")} (--window not given: its default)", null);
        }

        var chosen = Math.Clamp(steps, 1, longest);
        var ring = $"{value:N0} would take a ring of {value * stepBytes / (1024.0 * 1024 * 1024):F1} GiB";
        var cut = $"--window was not given, and {ring} ({Counted.Of(layers, "layer")} x {Counted.Of(experts, "expert")} a step); without --window the ring stays within {DefaultRingBytes >> 30} GiB. Give --window, up to {Math.Min(ModelRoutingStatsOptions.LongestWindow(layers, experts), int.MaxValue)}, for a longer one.";
        return new(chosen, $"the window of {Counted.Of(chosen, "step")} (--window not given: {(chosen == steps ? "the steps to record" : $"the longest whose ring fits in {DefaultRingBytes >> 30} GiB")}, as {ring})", chosen < steps ? cut : null);
    }

    /// <summary>Whether --window was given, rather than chosen by <see cref="WindowFor"/>.</summary>
    private bool WindowGiven(ParseResult parse) => parse.GetResult(Window) is { Implicit: false };

    /// <summary>
    /// Why the model's metrics cannot be served as asked: a top-K above the experts, recent steps
    /// beyond --window, or more than <see cref="MaxSeries"/> series, naming the option that makes them;
    /// null when they fit.
    /// </summary>
    public string? SeriesProblem(ParseResult parse, int layers, int experts)
    {
        var (topExperts, expertSeries, recentSteps) = (parse.GetValue(TopExperts), parse.GetValue(ExpertSeries), parse.GetValue(RecentSteps));
        if (topExperts > experts)
        {
            return $"--metrics-top-experts {topExperts}: a layer has {Counted.Of(experts, "expert")}; give 0 to {experts:N0}.";
        }

        var window = parse.GetValue(Window);
        if (recentSteps > window)
        {
            return $"--metrics-recent-steps {recentSteps}: the window holds {Counted.Of(window, "step")} (--window {window}); give 1 to {window:N0}.";
        }

        var top = Math.Min(topExperts ?? ModelRoutingStatsMetrics.DefaultTopExperts, experts);
        var recent = recentSteps is not null;
        var ep = parse.GetValue(EpSize) is not null;
        var total = ModelRoutingStatsMetrics.SeriesCount(layers, experts, top, expertSeries, recent, ep);
        if (total <= MaxSeries)
        {
            return null;
        }

        // The series the advice keeps (the model's, the layers' and any recent ones), and the ranked and per-expert shares.
        var withoutRanked = ModelRoutingStatsMetrics.SeriesCount(layers, experts, 0, expertSeries: false, recent, ep);
        var ranked = ModelRoutingStatsMetrics.SeriesCount(layers, experts, top, expertSeries: false, recent, ep) - withoutRanked;
        var perExpert = total - withoutRanked - ranked;
        return perExpert > 0
            ? $"--metrics-expert-series: {layers:N0} layers × {experts:N0} experts make {perExpert:N0} series (2 per layer and expert), {total:N0} in all; an endpoint publishes at most {MaxSeries:N0}: leave it out (--metrics-top-experts names each layer's hottest and coldest)."
            : $"--metrics-top-experts {top}: {layers:N0} layers make {ranked:N0} series (4 per layer and position: a hot and a cold expert and their loads), {total:N0} in all; an endpoint publishes at most {MaxSeries:N0}: give at most {(MaxSeries - withoutRanked) / (4L * layers):N0}.";
    }
}

/// <summary>
/// A model's window in steps, how an error names it (<c>--window 700</c>, or where the replay's choice came from), and
/// why it was cut below the steps to record, where it was.
/// </summary>
internal readonly record struct ModelWindow(int Steps, string Named, string? CutReason)
{
    /// <summary>
    /// The note for standard error once <paramref name="recorded"/> steps are recorded: none where the window holds them
    /// all, as when an interrupted run recorded fewer steps than it was given.
    /// </summary>
    public IReadOnlyList<string> Notes(int recorded) =>
        CutReason is { } reason && recorded > Steps ? [$"note: the window holds the newest {Steps:N0} of {recorded:N0} steps recorded: {reason}"] : [];
}
