using System.Text;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Standard output or error that a failed write (a full disk, a closed pipe, a descriptor the caller closed:
/// <c>&gt;&amp;-</c>) does not abort: the first failure is kept and later writes are dropped, so that the command
/// still writes its files (--save, -o, ...). The program then names a failed standard output, not the input, and
/// exits with <see cref="ExitCodes.WriteFailed"/>; a failed standard error has nowhere to be named.
/// </summary>
internal sealed class GuardedWriter(TextWriter inner) : TextWriter(inner.FormatProvider)
{
    /// <summary>The first write that failed, or null: what the system said (a closed descriptor's "Bad file descriptor").</summary>
    public IOException? Failure { get; private set; }

    public override Encoding Encoding => inner.Encoding;

    public override void Write(char value) => Guarded(value, static (writer, c) => writer.Write(c));

    public override void Write(string? value) => Guarded(value, static (writer, text) => writer.Write(text));

    public override void Write(char[] buffer, int index, int count) =>
        Guarded((buffer, index, count), static (writer, part) => writer.Write(part.buffer, part.index, part.count));

    // A line in one call to the inner writer, which takes the console's lock once: a line another thread writes (a
    // signal's) never lands between this one and its newline.
    public override void WriteLine(string? value) => Guarded(value, static (writer, text) => writer.WriteLine(text));

    public override void Flush() => Guarded(0, static (writer, _) => writer.Flush());

    /// <summary>Runs <paramref name="write"/> on the inner writer unless a write failed before; keeps the first failure.</summary>
    private void Guarded<T>(T state, Action<TextWriter, T> write)
    {
        if (Failure is not null)
        {
            return;
        }

        try
        {
            write(inner, state);
        }
        catch (IOException exception)
        {
            Failure = exception;
        }
        catch (UnauthorizedAccessException exception)
        {
            // .NET reports a closed descriptor (EBADF) as "Access to the path is denied", the system's words inside.
            Failure = exception.InnerException as IOException ?? new IOException(exception.Message, exception);
        }
    }
}
