using System.Globalization;
using System.Text.Json;

namespace MoeGpuStats;

/// <summary>
/// An exception's message as a person reads it: one line, without .NET's parameter names; as the command line prints
/// an error, the C API's last-error text holds it and the metrics endpoint answers a failed scrape.
/// </summary>
internal static class ErrorText
{
    /// <summary>
    /// The message of <paramref name="exception"/> on one line. An <see cref="ArgumentException"/> is
    /// cut to its first line and loses the <c>(Parameter 'name')</c> .NET appends (the name is the
    /// library's, not anything the user typed; the lines after it are .NET's too, such as "Actual
    /// value was"). A <see cref="JsonException"/> gives its line and byte counted from 1, not .NET's
    /// <c>LineNumber: 0 | BytePositionInLine: 0</c>. Any other message keeps all of it, its line breaks shown as
    /// <c>\n</c> (<see cref="UnsafeText.Escaped"/>): they come from what the user gave, such as a file name with a newline.
    /// </summary>
    public static string Of(Exception exception)
    {
        var message = exception.Message;
        if (exception is ArgumentException argument)
        {
            if (argument.ParamName is { Length: > 0 } name)
            {
                var suffix = new ArgumentException("", name).Message.Trim();
                message = message.Replace(suffix, "", StringComparison.Ordinal);
            }

            message = message.Split('\n', 2)[0];
        }

        if (exception is JsonException { LineNumber: { } lineNumber } json && message.Contains(" LineNumber:", StringComparison.Ordinal))
        {
            // .NET counts a JSON error's line and byte from 0; an editor, and the JSON-lines errors, count from 1.
            message = string.Create(CultureInfo.InvariantCulture, $"{JsonReason(json)}, at line {lineNumber + 1}, byte {json.BytePositionInLine + 1}");
        }

        var line = UnsafeText.Escaped(message.Trim());
        return line.Length > 0 ? line : exception.GetType().Name;
    }

    /// <summary>
    /// <see cref="Of"/> as a clause inside a message's parentheses, without its closing period: "(No such file or
    /// directory)", as the JSON errors read, not "(No such file or directory.)".
    /// </summary>
    public static string Clause(Exception exception)
    {
        var text = Of(exception);
        return text.EndsWith('.') && !text.EndsWith("..", StringComparison.Ordinal) ? text[..^1] : text;
    }

    /// <summary>
    /// What a JSON reader's error says is wrong, as one clause: without .NET's position (<c>LineNumber: 0 |
    /// BytePositionInLine: 0</c>), which the caller gives counted from 1, its closing period, and its advice to a
    /// programmer ("not supported in this mode. Change the reader options." of a trailing comma: no option of this
    /// tool allows one, and JSON does not).
    /// </summary>
    public static string JsonReason(JsonException exception)
    {
        var message = exception.Message;
        if (message.IndexOf(" LineNumber:", StringComparison.Ordinal) is var at and >= 0)
        {
            message = message[..at].TrimEnd(' ', '|');
        }

        message = message.Replace(" which is not supported in this mode. Change the reader options.", ", which JSON does not allow.", StringComparison.Ordinal);
        return message.Trim().TrimEnd('.');
    }
}
