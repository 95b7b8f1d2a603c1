using System.Diagnostics;
using System.Text.Json;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Cli.Commands;

/// <summary>Fills one batch's ids (not timed); returns its tokens, which may differ from batch to batch (a prefill, then decode steps).</summary>
internal delegate int FillBatch(int step, Span<int> ids);

/// <summary>Records one batch's ids, <paramref name="tokens"/> of them: the call the report times.</summary>
internal delegate void RecordBatch(RoutingStats stats, ReadOnlySpan<int> ids, int tokens);

/// <summary>What simulate and replay share: the engine, periodic reports, progress, metrics, and the ending.</summary>
internal sealed class RecordingSession : RecordingRun
{
    public required RoutingStatsOptions Options { get; init; }

    /// <summary>Records <paramref name="steps"/> batches of <paramref name="ids"/> (filled, then recorded and timed), then reports.</summary>
    /// <param name="steps">Batches to record.</param>
    /// <param name="ids">The buffer each batch is filled into.</param>
    /// <param name="fill">Fills a batch (not timed) and says its tokens.</param>
    /// <param name="record">Records a batch (timed).</param>
    /// <param name="warnings">Lines for standard error once the batches are recorded, before the report (and before an endpoint kept up by --serve-after).</param>
    public int Run(int steps, Span<int> ids, FillBatch fill, RecordBatch record, Func<IEnumerable<string>>? warnings = null)
    {
        RoutingStats stats;
        try
        {
            stats = RoutingStats.Create(Options);
        }
        catch (InvalidOperationException exception)
        {
            Console.Error.WriteLine(exception.Message);
            return ExitCodes.NoAccelerator;
        }

        using var owned = stats;
        if (!MetricsServing.TryStart(Console, MetricsPort, MetricsHost, port => MetricsEndpoint.Start(stats, MetricsHost, port), out var metrics))
        {
            return ExitCodes.Usage;
        }

        using var served = metrics;
        var started = Stopwatch.GetTimestamp();
        var reports = new ReportSchedule(ReportInterval);
        var done = 0;
        var interrupt = Console.Interrupt;
        interrupt.Recording();
        using (var progress = new ProgressDisplay(Console, steps, enabled: !Json, unit: "batches"))
        {
            for (var step = 0; step < steps && !interrupt.Requested; step++, done++)
            {
                var tokens = fill(step, ids);
                var recording = Stopwatch.GetTimestamp();
                record(stats, ids, tokens);
                // The first record compiles the engine's code (hundreds of ms on ILGPU's CPU
                // accelerator): timed, it would make the mean describe the warm-up, not the records.
                if (step > 0)
                {
                    stats.RecordRoutingLatency(Stopwatch.GetElapsedTime(recording));
                }
                progress.Report(step + 1);
                if (reports.Due)
                {
                    var at = step + 1;
                    reports.Report(() =>
                    {
                        using var now = stats.Snapshot();
                        progress.WriteLine(RunReport.Periodic(now, at, steps, Stopwatch.GetElapsedTime(started)));
                    });
                }
            }
        }

        interrupt.Finishing();
        foreach (var warning in warnings?.Invoke() ?? [])
        {
            Console.Error.WriteLine(warning);
        }

        using var snapshot = stats.Snapshot();
        if (done < steps)
        {
            Console.Error.WriteLine($"interrupted after {done:N0} of {steps:N0} batches: reporting and saving what was recorded.");
        }

        if (ModelCounts.InvalidWarning(snapshot.InvalidExpertIds, snapshot.RoutedSlots, snapshot.ExpertTokenCounts.Count) is { } invalid)
        {
            Console.Error.WriteLine(invalid);
        }

        var code = Finish(Console, snapshot, Json, Plot, Save, done < steps ? $"{Title} (interrupted after {done:N0} of {steps:N0} batches)" : Title, EngineChoice.Describe(stats), Timed);
        ServeAfterTheRun(finished: done == steps);

        return code == ExitCodes.Ok && done < steps ? ExitCodes.Interrupted : code;
    }

    /// <summary>The ending every command shares: JSON or the report, then the plot and the file.</summary>
    public static int Finish(CliConsole console, RoutingStats snapshot, bool json, FileInfo? plot, FileInfo? save, string heading, string? engine, string timed, string saveOption = "--save")
    {
        if (json)
        {
            console.Out.WriteLine(JsonSerializer.Serialize(snapshot));
            if (engine is not null)
            {
                // Scripts that read the JSON still learn which engine counted (the device check greps for it).
                console.Error.WriteLine($"engine: {engine}");
            }
        }
        else
        {
            RunReport.Print(console.Out, snapshot, heading, engine, timed);
        }

        return new OutputFiles(console)
            .Add("--plot", plot, "plot", full => LoadPlot.Save(snapshot, full))
            .Add(saveOption, save, "snapshot", full => OutputPath.WriteAtomically(full, stream => JsonSerializer.Serialize(stream, snapshot, SnapshotFile.Indented)))
            .WriteAll();
    }
}
