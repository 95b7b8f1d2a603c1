using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Monitoring;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Cli.Commands;

/// <summary>What simulate and replay share: the engine, periodic reports, progress, metrics, and the ending.</summary>
internal sealed class RecordingSession
{
    public required RoutingStatsOptions Options { get; init; }

    public required bool Json { get; init; }

    public FileInfo? Plot { get; init; }

    public FileInfo? Save { get; init; }

    public int? MetricsPort { get; init; }

    public string MetricsHost { get; init; } = "localhost";

    public double ReportInterval { get; init; } = 5.0;

    public required string Title { get; init; }

    /// <summary>Records <paramref name="steps"/> batches with <paramref name="record"/>, then reports.</summary>
    public int Run(int steps, Action<RoutingStats, int> record)
    {
        using var loggerFactory = Logging.Create(Json);
        var logger = loggerFactory.CreateLogger("MoeGpuStats");
        RoutingStats stats;
        try
        {
            stats = RoutingStats.Create(Options, logger);
        }
        catch (InvalidOperationException exception)
        {
            Console.Error.WriteLine(exception.Message);
            return ExitCodes.NoAccelerator;
        }
        catch (ArgumentOutOfRangeException exception)
        {
            Console.Error.WriteLine(exception.Message);
            return ExitCodes.Usage;
        }

        using var monitor = new PerformanceMonitor(TimeSpan.FromSeconds(ReportInterval), logger, stats);
        MetricsEndpoint? metrics = null;
        try
        {
            metrics = MetricsPort is { } port ? MetricsEndpoint.Start(stats, MetricsHost, port) : null;
        }
        catch (Exception exception) when (exception is System.Net.HttpListenerException or ArgumentException)
        {
            Console.Error.WriteLine($"cannot serve metrics on {MetricsHost}:{MetricsPort}: {exception.Message}");
            return ExitCodes.Usage;
        }

        using var served = metrics;
        if (metrics is not null)
        {
            Console.Error.WriteLine($"metrics: http://{MetricsHost}:{MetricsPort}/metrics");
        }

        var lastReport = Stopwatch.GetTimestamp();
        using (var progress = new ProgressDisplay(steps, enabled: !Json))
        {
            for (var step = 0; step < steps; step++)
            {
                var started = Stopwatch.GetTimestamp();
                record(stats, step);
                stats.RecordRoutingLatency(Stopwatch.GetElapsedTime(started));
                progress.Report(step + 1);
                if (Stopwatch.GetElapsedTime(lastReport).TotalSeconds >= ReportInterval)
                {
                    monitor.PrintReport();
                    lastReport = Stopwatch.GetTimestamp();
                }
            }
        }

        using var snapshot = stats.Snapshot();
        return Finish(snapshot, Json, Plot, Save, $"{Title} on the {stats.Backend} engine ({stats.DeviceName})", monitor);
    }

    /// <summary>The ending every command shares: JSON or the report and summary, then the plot and the file.</summary>
    public static int Finish(RoutingStats snapshot, bool json, FileInfo? plot, FileInfo? save, string heading, PerformanceMonitor? monitor = null)
    {
        if (json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(snapshot));
        }
        else
        {
            monitor?.PrintReport();
            SummaryPrinter.Print(Console.Out, snapshot, heading);
        }

        if (plot is not null)
        {
            LoadPlot.Save(snapshot, plot.FullName);
            Console.Error.WriteLine($"plot: {plot.FullName}");
        }

        if (save is not null)
        {
            RoutingStatsFile.Save(snapshot, save.FullName);
            Console.Error.WriteLine($"snapshot: {save.FullName}");
        }

        return ExitCodes.Ok;
    }
}
