using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace MoeGpuStats.Bench;

/// <summary>
/// The quick modes' options, parsed by System.CommandLine. A value that is not a whole number in its range, or a
/// model shape no model takes, is a parse error naming the option, the value and what is allowed, so that a typo never
/// runs a long device check on a default the user did not ask for.
/// </summary>
internal static class QuickOptions
{
    /// <summary><c>--model-shapes L×E×k×T,..</c>: the shapes a mode runs, in the order given (<see cref="ModelShape.ParseList"/>).</summary>
    public static Option<ModelShape[]> Shapes(string fallback) => new("--model-shapes")
    {
        Description = "Whole-model shapes LxExkxT, comma-separated.",
        Arity = ArgumentArity.ExactlyOne,
        DefaultValueFactory = _ => ModelShape.ParseList(fallback),
        CustomParser = result =>
        {
            try
            {
                return ModelShape.ParseList(Token(result));
            }
            catch (FormatException exception)
            {
                result.AddError($"--model-shapes: {exception.Message}");
                return [];
            }
        },
    };

    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/>; <paramref name="what"/> says what it counts, for the help and the refusal.</summary>
    public static Option<int> WholeNumber(string name, int fallback, int min, int max, string what) => new(name)
    {
        Description = $"{Capitalized(what)}, {Range(min, max)}.",
        DefaultValueFactory = _ => fallback,
        CustomParser = result => Parse(result, name, Token(result), min, max, what),
    };

    /// <summary>
    /// Comma-separated whole numbers (at least one), each from <paramref name="min"/> to <paramref name="max"/>; where the
    /// option is absent, <paramref name="fallback"/>, which a mode may leave empty to derive its default from other options.
    /// </summary>
    public static Option<T[]> WholeNumbers<T>(string name, T[] fallback, T min, T max, string what)
        where T : IBinaryInteger<T>, IMinMaxValue<T> => new(name)
    {
        Description = $"{Capitalized(what)}, comma-separated, each {Range(min, max)}.",
        Arity = ArgumentArity.ExactlyOne,
        DefaultValueFactory = _ => fallback,
        CustomParser = result =>
        {
            var text = Token(result);
            var entries = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (entries.Length == 0)
            {
                result.AddError($"{name} {text}: give {what}, comma-separated, each {Range(min, max)}.");
                return [];
            }

            return [.. entries.Select(entry => Parse(result, name, text, min, max, what, entry))];
        },
    };

    /// <summary>One of <paramref name="allowed"/>, or null where the option is absent.</summary>
    public static Option<string?> OneOf(string name, string[] allowed, string description) => new(name)
    {
        Description = $"{description} One of: {string.Join(", ", allowed)}.",
        CustomParser = result =>
        {
            var text = Token(result);
            if (allowed.Contains(text))
            {
                return text;
            }

            result.AddError($"{name} {text}: give one of {string.Join(", ", allowed)}.");
            return null;
        },
    };

    /// <summary><c>--json FILE</c>: every table's rows also written to FILE (<see cref="CheckReport"/>).</summary>
    public static Option<string?> Json() => Path(new Option<string?>("--json") { Description = "Also write every table's rows to this file as JSON." }, "the file to write the tables to");

    /// <summary>
    /// A path option; an empty value is refused, and so is one that starts with '-', since the parser takes an unknown
    /// option written after the path's name for the path itself (<c>--emit-ptx --json</c> would write into a folder
    /// named --json).
    /// </summary>
    public static Option<T> Path<T>(Option<T> option, string what)
        where T : class?
    {
        option.CustomParser = result =>
        {
            var path = Token(result);
            if (path.Length == 0)
            {
                result.AddError($"{option.Name} '': give {what}.");
            }
            else if (path.StartsWith('-'))
            {
                result.AddError($"{option.Name} {path}: give {what}; {path} is no option of this mode, and a path here cannot start with '-'.");
            }

            return (T)(object)path;
        };
        return option;
    }

    /// <summary>A mode's own flag whose whole-number value may be left out (<c>--seed-workload [E]</c>): <see cref="WholeNumber"/>, the value optional.</summary>
    public static Option<int> OptionalWholeNumber(string name, int fallback, int min, int max, string what)
    {
        var option = WholeNumber(name, fallback, min, max, what);
        option.Arity = ArgumentArity.ZeroOrOne;
        return option;
    }

    private static T Parse<T>(ArgumentResult result, string name, string text, T min, T max, string what, string? entry = null)
        where T : IBinaryInteger<T>, IMinMaxValue<T>
    {
        if (T.TryParse(entry ?? text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
        {
            return value;
        }

        result.AddError(entry is null
            ? $"{name} {text}: give {what}, a whole number {Range(min, max)}."
            : $"{name} {text}: '{entry}' is not a whole number {Range(min, max)}; give {what}, comma-separated.");
        return T.Zero;
    }

    private static string Token(ArgumentResult result) => result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";

    private static string Range<T>(T min, T max)
        where T : IBinaryInteger<T>, IMinMaxValue<T> =>
        max == T.MaxValue
            ? string.Create(CultureInfo.InvariantCulture, $"from {min:N0}")
            : string.Create(CultureInfo.InvariantCulture, $"from {min:N0} to {max:N0}");

    private static string Capitalized(string what) => string.Concat(what[..1].ToUpperInvariant(), what[1..]);
}
