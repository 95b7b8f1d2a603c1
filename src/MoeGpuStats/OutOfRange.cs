using System.Globalization;
using System.Runtime.CompilerServices;
using static System.FormattableString;

namespace MoeGpuStats;

/// <summary>
/// Out-of-range arguments refused on one line in the caller's words: <c>"{name} is {value}; {allowed}"</c>.
/// </summary>
/// <remarks>
/// .NET's <see cref="ArgumentOutOfRangeException"/> given an actual value continues its message on a second
/// line ("Actual value was N."), and its <c>ThrowIf…</c> helpers word the rule their own way; these errors
/// name the value in the message instead and leave <see cref="ArgumentOutOfRangeException.ActualValue"/> null.
/// Numbers are written invariantly, whatever the caller's culture, the rule's as its caller builds it
/// (<c>Invariant($"give 1 to {max:N0}.")</c>): a JSON reader quotes the value as the file wrote it.
/// </remarks>
internal static class OutOfRange
{
    /// <summary>The error for <paramref name="name"/> holding <paramref name="value"/>, formatted invariantly.</summary>
    /// <param name="name">The argument or option as the caller writes it.</param>
    /// <param name="value">What the caller gave.</param>
    /// <param name="allowed">What is allowed, as a clause ending in a full stop ("give 1 to 4,096."), its numbers written invariantly.</param>
    public static ArgumentOutOfRangeException Error<T>(string name, T value, string allowed) =>
        new(name, string.Create(CultureInfo.InvariantCulture, $"{name} is {value}; {allowed}"));

    /// <summary>Throws unless <paramref name="value"/> is 0 or more.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is negative.</exception>
    public static void ThrowIfNegative(long value, [CallerArgumentExpression(nameof(value))] string name = "")
    {
        if (value < 0)
        {
            throw Error(name, value, "it cannot be negative.");
        }
    }

    /// <summary>Throws unless <paramref name="value"/> is zero or longer.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is negative.</exception>
    public static void ThrowIfNegative(TimeSpan value, [CallerArgumentExpression(nameof(value))] string name = "")
    {
        if (value < TimeSpan.Zero)
        {
            throw Error(name, Invariant($"{value.TotalMilliseconds} ms"), "it cannot be negative.");
        }
    }

    /// <summary>Throws unless <paramref name="value"/> indexes one of <paramref name="count"/> items of <paramref name="what"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is not in [0, <paramref name="count"/>).</exception>
    public static void ThrowIfNotIndex(int value, int count, string what, [CallerArgumentExpression(nameof(value))] string name = "")
    {
        if ((uint)value >= (uint)count)
        {
            throw Error(name, value, count == 0 ? Invariant($"there is no {what} yet.") : Invariant($"give 0 to {count - 1:N0} ({Plural.Of(count, what)})."));
        }
    }
}
