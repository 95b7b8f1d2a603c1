using System.Diagnostics;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// A replay whose file has a layers axis: each step, every layer's ids, recorded into one
/// <see cref="ModelRoutingStats"/>; then the model's balance, and the window load for <c>plan</c>.
/// </summary>
internal sealed class ModelReplay : RecordingRun
{
    public required ModelRoutingStatsOptions Options { get; init; }

    /// <summary>How an error names the window: <c>--window 700</c>, or where the replay's choice came from (<see cref="ModelOptions.WindowFor"/>).</summary>
    public required string WindowNamed { get; init; }

    /// <summary>Where <c>--window-load</c> writes <see cref="ModelRoutingStats.WindowLoad()"/>; null for nowhere.</summary>
    public FileInfo? WindowLoad { get; init; }

    /// <summary>The hottest and coldest experts per layer the metrics publish.</summary>
    public int MetricsTopExperts { get; init; } = ModelRoutingStatsMetrics.DefaultTopExperts;

    /// <summary>Whether the metrics publish one series per (layer, expert) as well.</summary>
    public bool MetricsExpertSeries { get; init; }

    /// <summary>The window's newest steps the recent series cover; null publishes none.</summary>
    public int? MetricsRecentSteps { get; init; }

    /// <summary>The layers the text report lists per span, worst first (<c>--layers-shown</c>); 0 lists every layer.</summary>
    public int LayersShown { get; init; } = ModelReport.ShownLayers;

    /// <summary>The expert-parallel ranks the report and the metrics add the balance over (<c>--ep-size</c>, checked to divide the experts); null for none.</summary>
    public int? EpSize { get; init; }

    /// <summary>The trace's steps left out before the first recorded (<c>--skip-steps</c>), which the plot says its steps start after.</summary>
    public int StepsSkipped { get; init; }

    /// <summary>
    /// The recent series' steps, at most the window: --window's value was checked against them, but a
    /// large model's window may be cut to the steps recorded, whose recent steps are all of it.
    /// </summary>
    private int? RecentSteps() => MetricsRecentSteps is { } steps ? Math.Min(steps, Options.Window) : null;

    /// <summary>Records <paramref name="steps"/> steps of <paramref name="ids"/> (<c>[layers, tokens, topK]</c>, filled by <paramref name="fill"/>), then reports.</summary>
    /// <param name="steps">Steps to record.</param>
    /// <param name="ids">The buffer each step is filled into, large enough for the largest.</param>
    /// <param name="topK">Experts per token.</param>
    /// <param name="fill">Fills a step and returns its tokens per layer, which may differ from step to step.</param>
    /// <param name="warnings">Lines for standard error once the steps are recorded, before the report, given the steps recorded (those the model did not leave out).</param>
    public int Run(int steps, Span<int> ids, int topK, FillBatch fill, Func<int, IEnumerable<string>> warnings)
    {
        ModelRoutingStats stats;
        try
        {
            stats = ModelRoutingStats.Create(Options);
        }
        catch (InvalidOperationException exception)
        {
            Console.Error.WriteLine(exception.Message);
            return ExitCodes.NoAccelerator;
        }
        catch (ArgumentOutOfRangeException)
        {
            // Layers and experts were checked against the file; what is left is the window ring's size.
            Console.Error.WriteLine(
                $"{WindowNamed}: the window ring would hold {Options.Window:N0} steps x {Counted.Of(Options.Layers, "layer")} x {Counted.Of(Options.Experts, "expert")} = {Options.WindowEntries:N0} counts; it holds at most {ModelRoutingStatsOptions.MaxWindowEntries:N0}. Give --window {ModelRoutingStatsOptions.LongestWindow(Options.Layers, Options.Experts)} or less.");
            return ExitCodes.Usage;
        }
        catch (InsufficientMemoryException)
        {
            // The engine could not allocate the state, whose window ring is nearly all of it.
            Console.Error.WriteLine(
                $"{WindowNamed}: the model's state ({Options.Window:N0} steps x {Counted.Of(Options.Layers, "layer")} x {Counted.Of(Options.Experts, "expert")} in the window) needs {Options.DeviceStateBytes() / (1024.0 * 1024 * 1024):F1} GiB, more memory than the engine could allocate; give a shorter --window.");
            return ExitCodes.Usage;
        }

        using var owned = stats;
        if (!MetricsServing.TryStart(Console, MetricsPort, MetricsHost, port => MetricsEndpoint.Start(stats, MetricsHost, port, Math.Min(MetricsTopExperts, Options.Experts), MetricsExpertSeries, RecentSteps(), EpSize), out var metrics))
        {
            return ExitCodes.Usage;
        }

        using var served = metrics;
        var timeline = Plot is null ? null : new BalanceTimeline(Options.Layers, Options.Experts, steps, Options.SkipEmptySteps, StepsSkipped);
        var times = new StepTimes { Timed = Timed };
        var started = Stopwatch.GetTimestamp();
        var reports = new ReportSchedule(ReportInterval);
        var done = 0;
        var recorded = 0;
        var interrupt = Console.Interrupt;
        interrupt.Recording();
        using (var progress = new ProgressDisplay(Console, steps, enabled: !Json, unit: "steps"))
        {
            for (var step = 0; step < steps && !interrupt.Requested; step++, done++)
            {
                var tokens = fill(step, ids);
                var stepIds = ids[..(Options.Layers * tokens * topK)];
                var recording = Stopwatch.GetTimestamp();
                stats.RecordStep(stepIds, tokens, topK);
                // A step the model leaves out (padding alone) is a check, not a record: timed, it would lower the mean of the
                // steps recorded. The first step recorded compiles the engine's code: timed, the mean would describe the warm-up.
                if (!(Options.SkipEmptySteps && stepIds.IndexOfAnyExcept(-1) < 0))
                {
                    if (recorded > 0)
                    {
                        times.Add(Stopwatch.GetElapsedTime(recording), tokens);
                    }

                    recorded++;
                }

                timeline?.Add(ids, tokens, topK);
                progress.Report(step + 1);
                if (reports.Due)
                {
                    var at = step + 1;
                    reports.Report(() => progress.WriteLine(ModelReport.Periodic(stats.Summary(), times, at, steps, Stopwatch.GetElapsedTime(started))));
                }
            }
        }

        interrupt.Finishing();
        foreach (var warning in warnings(recorded))
        {
            Console.Error.WriteLine(warning);
        }

        if (done < steps)
        {
            Console.Error.WriteLine($"interrupted after {done:N0} of {steps:N0} steps: reporting and saving what was recorded.");
        }

        // One copy of the state for every figure and file below: read on the engine, each layer's counts would be a device
        // read of their own, and the report would grow with the square of the layers on ILGPU's CPU accelerator. The copy
        // goes before the serving after the run, which reads the model itself.
        int written;
        using (var final = stats.ReadOnlyCopy())
        {
            var summary = final.Summary();
            var counts = ModelCounts.Of(final);
            var ranks = EpSize is { } n ? EpBalance.Of(final, n) : null;
            if (counts.Warning(Options.Experts) is { } invalid)
            {
                Console.Error.WriteLine(invalid);
            }

            if (Json)
            {
                ModelReport.WriteJson(Console.Out, summary, counts, Options.Experts, times, ranks, Options.SkipEmptySteps ? done - recorded : null);
                Console.Error.WriteLine($"engine: {EngineChoice.Describe(stats)}");
            }
            else
            {
                ModelReport.Print(Console.Out, summary, counts, done < steps ? $"{Title} (interrupted after {done:N0} of {steps:N0} steps)" : Title, EngineChoice.Describe(stats), times, ranks, LayersShown);
            }

            written = new OutputFiles(Console)
                .Add("--window-load", WindowLoad, "window load", full => WindowLoadFile.Save(full, final.WindowLoad(), Options.Layers, Options.Experts))
                .Add("--plot", Plot, "plot", full => ModelLoadPlot.Save(final, timeline!, full))
                .Add("--save", Save, "snapshot", full => SnapshotFile.Save(final, full))
                .WriteAll();
        }

        ServeAfterTheRun(finished: done == steps);

        return written != ExitCodes.Ok ? written : done < steps ? ExitCodes.Interrupted : ExitCodes.Ok;
    }
}
