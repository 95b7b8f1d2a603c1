using System.CommandLine;
using System.CommandLine.Parsing;

namespace MoeGpuStats.Bench;

/// <summary>
/// A quick mode of the bench: the flag that picks it (<c>--model-steps</c>), its options, and what it runs, printing
/// one table or line. A command line with an option the mode does not have, a value that does not parse, or an option
/// without its value stops with the parser's line and exit code 2 before anything runs.
/// </summary>
internal sealed class QuickMode
{
    private readonly RootCommand _command;

    /// <param name="flag">The mode's flag; a bool option, or one whose value may be left out.</param>
    /// <param name="description">What the mode prints, for <c>--help</c>.</param>
    /// <param name="options">The mode's options.</param>
    /// <param name="run">The mode, given the parsed command line; returns the exit code.</param>
    public QuickMode(Option flag, string description, IEnumerable<Option> options, Func<ParseResult, int> run)
    {
        Flag = flag.Name;
        flag.Description ??= "Picks this mode.";
        _command = new RootCommand(description) { flag };
        foreach (var option in options)
        {
            _command.Options.Add(option);
        }

        _command.SetAction(run);
    }

    /// <summary>The flag that picks the mode.</summary>
    public string Flag { get; }

    /// <summary>Parses <paramref name="args"/> as the mode's command line.</summary>
    public ParseResult Parse(string[] args) => _command.Parse(args);

    /// <summary>
    /// Runs the mode on <paramref name="args"/> (or prints its <c>--help</c>); where they do not parse, writes one line to
    /// <paramref name="error"/> and returns exit code 2.
    /// </summary>
    public int Invoke(string[] args, TextWriter error)
    {
        var result = Parse(args);
        if (result.Errors.Count > 0)
        {
            error.WriteLine($"{Error(result)} Run with {Flag} --help for the mode's options.");
            return 2;
        }

        return result.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    }

    /// <summary>
    /// The one error that tells the story. An option left without its value comes first: the parser reads the next
    /// option as that value (<c>--steps --model-shapes 1x8x1x1</c>), and the errors it gives then are about the words
    /// pushed out of place.
    /// </summary>
    private string Error(ParseResult result)
    {
        var names = _command.Options.SelectMany(o => o.Aliases.Append(o.Name)).ToHashSet();
        if (result.CommandResult.Children.OfType<OptionResult>().FirstOrDefault(o => o.Tokens.Any(t => names.Contains(t.Value))) is { } took)
        {
            return $"{took.Option.Name} needs a value, given right after it ({took.Tokens.First(t => names.Contains(t.Value)).Value} was read as its value).";
        }

        if (result.CommandResult.Children.OfType<OptionResult>().FirstOrDefault(o => !o.Implicit && o.Tokens.Count == 0 && o.Option.Arity.MinimumNumberOfValues > 0) is { } bare)
        {
            return $"{bare.Option.Name} needs a value, given right after it.";
        }

        return result.Errors[0].Message;
    }
}
