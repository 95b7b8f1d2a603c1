using System.Text;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Standard output that a failed write (a full disk, a closed pipe) does not abort: the first failure
/// is kept and later writes are dropped, so that the command still writes its files (--save, -o, ...),
/// and the program then names standard output, not the input, and exits with
/// <see cref="ExitCodes.WriteFailed"/>.
/// </summary>
internal sealed class StandardOutput(TextWriter inner) : TextWriter(inner.FormatProvider)
{
    /// <summary>The first write that failed, or null.</summary>
    public IOException? Failure { get; private set; }

    public override Encoding Encoding => inner.Encoding;

    public override void Write(char value) => Guarded(value, static (writer, c) => writer.Write(c));

    public override void Write(string? value) => Guarded(value, static (writer, text) => writer.Write(text));

    public override void Write(char[] buffer, int index, int count) =>
        Guarded((buffer, index, count), static (writer, part) => writer.Write(part.buffer, part.index, part.count));

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
    }
}
