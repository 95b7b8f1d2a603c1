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

    public override void Write(char value)
    {
        if (Failure is null)
        {
            try
            {
                inner.Write(value);
            }
            catch (IOException exception)
            {
                Failure = exception;
            }
        }
    }

    public override void Write(string? value)
    {
        if (Failure is null)
        {
            try
            {
                inner.Write(value);
            }
            catch (IOException exception)
            {
                Failure = exception;
            }
        }
    }

    public override void Write(char[] buffer, int index, int count)
    {
        if (Failure is null)
        {
            try
            {
                inner.Write(buffer, index, count);
            }
            catch (IOException exception)
            {
                Failure = exception;
            }
        }
    }

    public override void Flush()
    {
        if (Failure is null)
        {
            try
            {
                inner.Flush();
            }
            catch (IOException exception)
            {
                Failure = exception;
            }
        }
    }
}
