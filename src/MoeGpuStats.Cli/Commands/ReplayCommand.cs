using System.CommandLine;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// <c>replay FILE</c>: a router's recorded top-k ids (.npy, .npz or JSON lines), recorded step by step
/// on the chosen engine; one layer's into <see cref="RoutingStats"/>, a trace with layers into
/// <see cref="ModelRoutingStats"/>. Steps may differ in tokens, as a prefill and decode batches do.
/// The options are <see cref="ReplayOptions"/>'s; an opened trace is replayed by <see cref="TraceReplay"/>.
/// </summary>
internal static partial class ReplayCommand
{
    public static Command Create(CliConsole console)
    {
        var options = new ReplayOptions();
        var command = options.CreateCommand();
        command.SetAction(parse => Replay(console, parse, options));
        return command;
    }

    /// <summary>Opens the trace and replays it; a refusal is one line on standard error and its exit code.</summary>
    private static int Replay(CliConsole console, ParseResult parse, ReplayOptions options)
    {
        if ((options.Recording.Problem(parse) ?? EngineChoice.Problem()) is { } problem)
        {
            console.Error.WriteLine(problem);
            return ExitCodes.Usage;
        }

        var path = parse.GetValue(options.File)!;
        IRoutingTrace trace;
        try
        {
            if (!InputFile.TryRead(console, path, $"a {TraceFile.Names} file", name => TraceFile.Open(name, parse.GetValue(options.Layout), parse.GetValue(options.Members), InputFile.LongReadNote(console, path)), out trace))
            {
                return ExitCodes.BadInput;
            }
        }
        catch (IdLayoutException exception)
        {
            console.Error.WriteLine(exception.Message);
            return ExitCodes.Usage;
        }

        using (trace)
        {
            return new TraceReplay(console, parse, options, path, trace).Run();
        }
    }

    /// <summary>A line for standard error and the exit code, where replay refuses its input.</summary>
    private readonly record struct Refusal(string Message, int ExitCode);
}
