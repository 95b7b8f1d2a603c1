using System.Text;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Standard error whose lines show as written: each <see cref="WriteLine(string)"/> escapes what a terminal acts on
/// (<see cref="UnsafeText.Escaped"/>), so that a file name holding a line break or a terminal escape, wherever a
/// message quotes it, keeps the message on one line and colours nothing. <see cref="Write(string)"/> passes the
/// program's own text through as it is: the progress bar's carriage returns, a stack trace asked for by MOEGS_DEBUG.
/// </summary>
internal sealed class EscapedLinesWriter(TextWriter inner) : TextWriter(inner.FormatProvider)
{
    public override Encoding Encoding => inner.Encoding;

    public override void Write(char value) => inner.Write(value);

    public override void Write(string? value) => inner.Write(value);

    public override void Write(char[] buffer, int index, int count) => inner.Write(buffer, index, count);

    // The line and its newline in one call, as GuardedWriter passes them on.
    public override void WriteLine(string? value) => inner.WriteLine(value is null ? null : UnsafeText.Escaped(value));

    public override void Flush() => inner.Flush();
}
