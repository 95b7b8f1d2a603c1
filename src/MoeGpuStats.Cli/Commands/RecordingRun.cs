
namespace MoeGpuStats.Cli.Commands;

/// <summary>What a recording run takes from the command line whether it records one layer (<see cref="RecordingSession"/>) or a whole model (<see cref="ModelReplay"/>).</summary>
internal abstract class RecordingRun
{
    public required CliConsole Console { get; init; }

    public required bool Json { get; init; }

    /// <summary>Where <c>--plot</c> draws the picture; null for nowhere.</summary>
    public FileInfo? Plot { get; init; }

    /// <summary>Where <c>--save</c> writes the final snapshot as JSON; null for nowhere.</summary>
    public FileInfo? Save { get; init; }

    public int? MetricsPort { get; init; }

    public string MetricsHost { get; init; } = "localhost";

    /// <summary>Whether the metrics endpoint stays up after the run until Ctrl-C or SIGTERM.</summary>
    public bool ServeAfter { get; init; }

    /// <summary>Seconds between periodic reports; 0: none.</summary>
    public double ReportInterval { get; init; } = 5.0;

    public required string Title { get; init; }

    /// <summary>What the time per batch or step covers and leaves out, for the report.</summary>
    public required string Timed { get; init; }

    /// <summary>With <c>--serve-after</c>, after a run that recorded every step, keeps the endpoint serving the final state until Ctrl-C or SIGTERM.</summary>
    protected void ServeAfterTheRun(bool finished)
    {
        if (ServeAfter && MetricsPort is { } port && finished)
        {
            MetricsServing.ServeUntilInterrupted(Console, MetricsHost, port);
        }
    }
}
