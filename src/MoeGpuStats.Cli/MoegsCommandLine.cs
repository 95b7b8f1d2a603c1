using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.RegularExpressions;
using MoeGpuStats.Cli.Commands;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Cli;

/// <summary>The <c>moegs</c> program: commands, parsing, and the exit codes of <see cref="ExitCodes"/>.</summary>
internal static partial class MoegsCommandLine
{
    /// <summary>Set to 1 to see where an unexpected error came from.</summary>
    public const string DebugVariable = "MOEGS_DEBUG";

    /// <summary>How the parser's refusal of a command without its input, or of an option without its value, begins.</summary>
    private const string MissingArgument = "Required argument missing";

    /// <summary>Each command's input, as its missing-input message names it.</summary>
    private static readonly Dictionary<string, string> InputNeeded = new()
    {
        ["replay"] = "the router's top-k ids, a .npy, .npz or JSON-lines file",
        ["report"] = "a snapshot that --save wrote (one layer's or a model's)",
        ["merge"] = "the snapshots of the ranks to combine, each once",
        ["plan"] = "the expert load, [layers, experts] in a .npy or JSON file, or a snapshot that --save wrote",
    };

    /// <summary>
    /// Runs <c>moegs</c> with <paramref name="args"/>, writing to <paramref name="console"/>; returns the
    /// exit code. Standard output that cannot be written (a full disk, a closed descriptor) is named as such
    /// after the command, which still writes its files: exit code <see cref="ExitCodes.WriteFailed"/>; standard
    /// error that cannot be written is let be.
    /// </summary>
    /// <param name="args">The command line, without the program's name.</param>
    /// <param name="console">Standard output and error, and whether standard error is a terminal.</param>
    /// <param name="handleSignals">
    /// Whether Ctrl-C and SIGTERM are the run's (<see cref="Interruption"/>): the program's own run; not a run in a process
    /// that hosts it, such as the tests', whose signals are the host's.
    /// </param>
    public static async Task<int> RunAsync(string[] args, CliConsole console, bool handleSignals = false)
    {
        // Figures and messages read the same on every machine: "1,234.50", never "1.234,50" (this flow only);
        // and in English: System.CommandLine words its parse errors and help headings in the UI culture, and a
        // half-translated message would lose the suggestion that follows its English text.
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        CultureInfo.CurrentUICulture = CultureInfo.InvariantCulture;
        var output = new GuardedWriter(console.Out);
        var error = new GuardedWriter(new EscapedLinesWriter(console.Error));
        int code;
        using (var interruption = new Interruption(error, console.ErrorIsTerminal, handleSignals))
        {
            code = await RunCommandAsync(args, console with { Out = output, Error = error, Interrupt = interruption });
            code = code == ExitCodes.Ok && interruption.StoppedEarly ? ExitCodes.Interrupted : code;
        }

        output.Flush();
        if (output.Failure is not { } failure)
        {
            return code;
        }

        error.WriteLine($"moegs: cannot write to standard output ({ErrorText.Clause(failure)}): what went there is incomplete; output files, if any, are written as usual.");
        // As for an output file, the failed write wins over the interruption: what was saved is not all there is.
        return code is ExitCodes.Ok or ExitCodes.Interrupted ? ExitCodes.WriteFailed : code;
    }

    private static async Task<int> RunCommandAsync(string[] args, CliConsole console)
    {
        var root = new RootCommand(
            """
            moegs: Mixture-of-Experts routing statistics (tokens per expert, load imbalance, utilization,
            dropped tokens, losses, latency), kept on the GPU with ILGPU.

            Engine: the best accelerator present (CUDA, then OpenCL, then the managed engine; for a
            whole model CUDA, then managed);
            set MOEGS_ACCELERATOR=cuda|opencl|cpu|managed to choose (cpu = ILGPU's CPU accelerator).

            Start with:  moegs simulate            (synthetic routing, then a report)
                         moegs replay ids.npy --layout steps,tokens,k
                                                   (your router's saved top-k ids)
                         moegs report run.json     (a snapshot saved with --save)
                         moegs plan load.npy --replicas 288 --gpus 32
                                                   (an expert placement by DeepSeek's EPLB)

            Exit codes: 0 done, 1 an input file unreadable, malformed or unfit for the command
                        (snapshots of different models to merge), 2 invalid arguments,
                        3 the accelerator named by MOEGS_ACCELERATOR is not present,
                        4 an output file or standard output could not be written (the other outputs were),
                        130 stopped by Ctrl-C or SIGTERM (a run of simulate or replay still
                        reports and saves what it recorded; a second Ctrl-C, a second or more
                        later, ends at once; a signal that ends a command before it writes
                        anything ends the process by the signal: 130 or 143 in a shell).
            """)
        {
            SimulateCommand.Create(console),
            ReplayCommand.Create(console),
            SnapshotCommands.Report(console),
            SnapshotCommands.Merge(console),
            PlanCommand.Create(console),
        };
        var result = root.Parse(args);
        var command = result.CommandResult.Command;
        var help = command == root ? "moegs --help" : $"moegs {command.Name} --help";
        // The parser takes an option of one value given twice with a value once (--steps 2 --steps, --json --json=false)
        // as the value given: the second spelling is lost unseen.
        if (result.Errors.Count == 0 && Repeated(result) is { } repeated)
        {
            console.Error.WriteLine($"{UnsafeText.Escaped(repeated)} Run {help} for usage.");
            return ExitCodes.Usage;
        }

        if (result.Errors.Count > 0)
        {
            // Each message names its option, its value and what is allowed: one is the whole story. A
            // word the parser did not know says more than the missing command or argument it caused.
            // A mistyped option taken for an input file says more than the word it pushed out of place.
            var unrecognized = (result.Errors.FirstOrDefault(e => e.Message.StartsWith(SharedOptions.UnrecognizedOption, StringComparison.Ordinal))
                ?? result.Errors.FirstOrDefault(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal)))?.Message;
            // One dash before a long name (-experts 8) comes first: the parser read it as short options and their
            // values, and its own message names only what that pushed out of place (the 8).
            if (SingleDashed(args, command, root) is (string typed, string longName))
            {
                console.Error.WriteLine($"{UnsafeText.Escaped(typed)}: a long option takes two dashes. Did you mean {longName}? Run {help} for usage.");
                return ExitCodes.Usage;
            }

            // An option left without its value comes first: what follows it was read as other options and inputs.
            var withoutValue = WithoutValue(result, command);
            unrecognized = withoutValue is null ? unrecognized : null;
            var error = withoutValue ?? unrecognized ?? Repeated(result) ?? ValueError(result.Errors) ?? Missing(result.Errors, command) ?? result.Errors[0].Message;
            // A word the parser left unmatched, or one a file argument refused as a likely option (quoted in its message).
            var word = unrecognized is null ? null
                : unrecognized.StartsWith(SharedOptions.UnrecognizedOption, StringComparison.Ordinal) || result.UnmatchedTokens.Count == 0 ? QuotedWord().Match(unrecognized).Groups[1].Value
                : result.UnmatchedTokens[0];
            var meant = string.IsNullOrEmpty(word) ? null : Meant(word, command, root);
            // The option itself, refused: it came after "--", where every word is an input.
            var hint = meant is null ? SecondInput(word, command) : meant == word ? $" Words after -- are inputs; put {word} before it." : $" Did you mean {meant}?";
            console.Error.WriteLine($"{UnsafeText.Escaped(error)}{hint} Run {help} for usage.");
            return ExitCodes.Usage;
        }

        try
        {
            return await result.InvokeAsync(new InvocationConfiguration { Output = console.Out, Error = console.Error, EnableDefaultExceptionHandler = false });
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            // Every known kind of bad input has its own message; this line is for the ones nobody foresaw.
            console.Error.WriteLine($"moegs: unexpected error: {ErrorText.Clause(exception)} ({exception.GetType().Name}); set {DebugVariable}=1 to see where, and please report it.");
            if (Environment.GetEnvironmentVariable(DebugVariable) == "1")
            {
                console.Error.Write(exception + Environment.NewLine);
            }

            return ExitCodes.BadInput;
        }
    }

    /// <summary>
    /// What a word the parser did not match most likely meant: for a word that starts with '-' (its
    /// <c>=value</c> or <c>:value</c> aside), one of <paramref name="command"/>'s options or the root's
    /// options that apply to every command (<c>--help</c>), by any alias; else one of its subcommands;
    /// null when nothing is close.
    /// </summary>
    private static string? Meant(string word, Command command, RootCommand root)
    {
        if (!word.StartsWith('-'))
        {
            return TypoSuggestion.For(word, command.Subcommands.Select(c => c.Name));
        }

        var options = command.Options.Concat(command == root ? [] : root.Options.Where(o => o.Recursive)).Where(o => !o.Hidden);
        return TypoSuggestion.For(word.Split('=', ':')[0], options.SelectMany(o => o.Aliases.Prepend(o.Name)));
    }

    /// <summary>
    /// The first word before <c>--</c> that is a long option's name (or near one) after a single dash (<c>-experts</c>,
    /// <c>-top-k=2</c>), with the option it most likely meant; null where there is none.
    /// </summary>
    private static (string Typed, string Meant)? SingleDashed(IEnumerable<string> args, Command command, RootCommand root)
    {
        foreach (var arg in args.TakeWhile(arg => arg != "--"))
        {
            var name = arg.Split('=', ':')[0];
            if (name.Length > 3 && name[0] == '-' && name[1] != '-' && name[1..].All(c => char.IsAsciiLetterLower(c) || c == '-')
                && Meant("-" + name, command, root) is { } meant && meant.StartsWith("--", StringComparison.Ordinal))
            {
                return (arg, meant);
            }
        }

        return null;
    }

    /// <summary>
    /// For a word that is a second input to a command that reads one (<c>report a.json b.json</c>): that it reads one,
    /// and for snapshots, the command that reads several; empty otherwise, and for a number, more likely a second
    /// value given to an option (<c>--replicas 8 16</c>) than a file's name.
    /// </summary>
    private static string SecondInput(string? word, Command command) =>
        string.IsNullOrEmpty(word) || word.StartsWith('-') || double.TryParse(word, CultureInfo.InvariantCulture, out _)
        || command.Arguments is not [{ Arity.MaximumNumberOfValues: 1 } input] ? ""
        : command.Name == "report" ? $" report reads one {input.Name}; moegs merge A.json B.json ... combines snapshots and prints their report."
        : $" {command.Name} reads one {input.Name}.";

    /// <summary>The first refusal of a value the user gave (a malformed number, an unknown layout): what was typed says more than what was left out.</summary>
    private static string? ValueError(IReadOnlyList<ParseError> errors) =>
        errors.FirstOrDefault(e => !e.Message.StartsWith(MissingArgument, StringComparison.Ordinal) && !RequiredOption().IsMatch(e.Message))?.Message;

    /// <summary>
    /// An option given without its value, named as typed, with what its value is; null when every option has one. The
    /// first the parser names as such ("Required argument missing for option: '-o'."), else the first that took the
    /// next option as its value (<c>--seed --steps 3</c>, where the 3 is then left over).
    /// </summary>
    private static string? WithoutValue(ParseResult result, Command command)
    {
        var typed = result.Errors.Select(e => OptionWithoutValue().Match(e.Message)).FirstOrDefault(m => m.Success)?.Groups[1].Value;
        var takenAsValue = "";
        if (typed is null
            && result.CommandResult.Children.OfType<OptionResult>().FirstOrDefault(o => o.Tokens.Any(t => OptionNamed(t.Value, command) is not null)) is { } took)
        {
            typed = took.IdentifierToken?.Value ?? took.Option.Name;
            takenAsValue = $" ({took.Tokens.First(t => OptionNamed(t.Value, command) is not null).Value} was read as its value)";
        }

        if (typed is null)
        {
            return null;
        }

        var description = OptionNamed(typed, command)?.Description is { Length: > 0 } text ? $": {text}" : ".";
        return $"{typed} needs a value, given right after it{takenAsValue}{description}";
    }

    /// <summary>
    /// An option of one value given more than once with a value (<c>--steps 2 --steps 3</c>, <c>--steps 2 --steps</c>,
    /// <c>--json --json=false</c>), named by every spelling it has, with its values where each spelling has one; null
    /// where there is none. The parser says "expects a single argument but 2 were provided", which reads as two values
    /// after one name, or takes the one value given. A flag given twice without a value (<c>--json --json</c>) is no error.
    /// </summary>
    private static string? Repeated(ParseResult result)
    {
        var repeated = result.CommandResult.Children.OfType<OptionResult>()
            .FirstOrDefault(o => o.IdentifierTokenCount > 1 && o.Option.Arity.MaximumNumberOfValues == 1 && o.Tokens.Count > 0);
        if (repeated is null)
        {
            return null;
        }

        var option = repeated.Option;
        var named = option.Aliases.Count == 0 ? option.Name : $"{option.Name} ({string.Join(", ", option.Aliases.Order(StringComparer.Ordinal))})";
        var count = repeated.IdentifierTokenCount;
        var times = count == 2 ? "twice" : $"{count} times";
        var values = repeated.Tokens.Select(t => SharedOptions.Given(t.Value)).ToList();
        var given = values.Count == count ? $" ({string.Join(", ", values.SkipLast(1))} and {values[^1]})" : "";
        return $"{named} is given {times}{given}: give it once.";
    }

    /// <summary>The option of <paramref name="command"/> that <paramref name="word"/> names by its name or an alias, or null.</summary>
    private static Option? OptionNamed(string word, Command command) =>
        command.Options.FirstOrDefault(o => o.Name == word || o.Aliases.Contains(word));

    /// <summary>
    /// What the command still needs, on one line, so that a user learns it all at once: its input, as the
    /// command reads it (the parser said "Required argument missing for command: 'replay'."), and every
    /// required option left out (the parser said "Option '--x' is required." for each); null when nothing is missing.
    /// </summary>
    private static string? Missing(IReadOnlyList<ParseError> errors, Command command)
    {
        var input = errors.Any(e => e.Message.StartsWith(MissingArgument, StringComparison.Ordinal))
            && command.Arguments.FirstOrDefault() is { } argument
            && InputNeeded.TryGetValue(command.Name, out var needed)
                ? $"{command.Name} needs {argument.Name}: {needed}."
                : null;
        var options = errors
            .Select(e => RequiredOption().Match(e.Message))
            .Where(m => m.Success)
            .Select(m => m.Groups[1].Value)
            .ToList();
        var required = options.Count switch
        {
            0 => null,
            1 => $"Option {options[0]} is required",
            _ => $"Options {string.Join(", ", options.SkipLast(1))} and {options[^1]} are required",
        };
        return (input, required) switch
        {
            (null, null) => null,
            (null, _) => $"{required}.",
            (_, null) => input,
            _ => $"{input} {required} too.",
        };
    }

    [GeneratedRegex("^Required argument missing for option: '([^']+)'\\.$")]
    private static partial Regex OptionWithoutValue();

    [GeneratedRegex("^Option ('[^']+') is required\\.$")]
    private static partial Regex RequiredOption();

    [GeneratedRegex("'([^']+)'")]
    private static partial Regex QuotedWord();
}
