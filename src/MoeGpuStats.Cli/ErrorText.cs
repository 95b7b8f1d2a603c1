namespace MoeGpuStats.Cli;

/// <summary>An exception's message as a person reads it: one line, without .NET's parameter names.</summary>
internal static class ErrorText
{
    /// <summary>
    /// The message of <paramref name="exception"/>, cut to its first line, less the
    /// <c>(Parameter 'name')</c> that <see cref="ArgumentException"/> appends: the name is the library's,
    /// not anything the user typed.
    /// </summary>
    public static string Of(Exception exception)
    {
        var message = exception.Message;
        if (exception is ArgumentException { ParamName: { Length: > 0 } name })
        {
            var suffix = new ArgumentException("", name).Message.Trim();
            message = message.Replace(suffix, "", StringComparison.Ordinal);
        }

        var firstLine = message.Split('\n', 2)[0].Trim();
        return firstLine.Length > 0 ? firstLine : exception.GetType().Name;
    }
}
