namespace MoeGpuStats.Cli;

/// <summary>Where a run writes: the process's console, or writers a test reads.</summary>
/// <param name="Out">The report, or the JSON alone with <c>--json</c>.</param>
/// <param name="Error">Errors, progress, periodic reports and where files went.</param>
/// <param name="ErrorIsTerminal">Whether <paramref name="Error"/> is a terminal, where the progress bar redraws one line.</param>
internal sealed record CliConsole(TextWriter Out, TextWriter Error, bool ErrorIsTerminal)
{
    /// <summary>
    /// What Ctrl-C and SIGTERM do at each stage of the run (<see cref="MoegsCommandLine.RunAsync"/> gives the run's); a
    /// console a test builds has one of its own that no signal reaches.
    /// </summary>
    public Interruption Interrupt { get; init; } = new(TextWriter.Null, onNewLine: false, handleSignals: false);

    public static CliConsole System => new(Console.Out, Console.Error, !Console.IsErrorRedirected);
}
