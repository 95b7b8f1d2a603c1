
namespace MoeGpuStats.Cli.Output;

/// <summary>
/// The files a command writes at its end, in the order added. A failed write (the paths were checked
/// before the run, so it is rare: a full disk, a folder removed since) is one line naming the user's
/// path, and the files after it are still written, so that one failure does not lose the rest of a
/// long run's outputs.
/// </summary>
internal sealed class OutputFiles(CliConsole console)
{
    private readonly List<(string Option, FileInfo File, string Label, Action<string> Write)> _files = [];
    private volatile int _done;

    /// <summary>The files not yet written, as <c>--save run.json</c> (one that failed has said so): what a process ended at once leaves unwritten.</summary>
    public IReadOnlyList<string> Unwritten => [.. _files.Skip(_done).Select(f => UnsafeText.Escaped($"{f.Option} {f.File}"))];

    /// <summary>Adds a file to write, unless <paramref name="file"/> is null (its option was not given).</summary>
    /// <param name="option">The option that named the file, for the error line.</param>
    /// <param name="file">The file as the user gave it.</param>
    /// <param name="label">What the file is, for the line that says where it went.</param>
    /// <param name="write">Writes the file to a full path (atomically: <see cref="OutputPath"/>).</param>
    public OutputFiles Add(string option, FileInfo? file, string label, Action<string> write)
    {
        if (file is not null)
        {
            _files.Add((option, file, label, write));
        }

        return this;
    }

    /// <summary>
    /// Writes every file; <see cref="ExitCodes.Ok"/>, or <see cref="ExitCodes.WriteFailed"/> after any
    /// failure. An unexpected error in one file's writer (a defect, not the disk) is rethrown once the
    /// other files are written, so a picture that cannot be drawn does not lose the snapshot.
    /// </summary>
    public int WriteAll()
    {
        var code = ExitCodes.Ok;
        System.Runtime.ExceptionServices.ExceptionDispatchInfo? unexpected = null;
        console.Interrupt.Finishing(this);
        foreach (var (option, file, label, write) in _files)
        {
            OutputPath.RemoveStaleTemporaries(file.FullName);
            try
            {
                write(file.FullName);
                console.Error.WriteLine($"{label}: {UnsafeText.Escaped(file.FullName)}");
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
            {
                console.Error.WriteLine(UnsafeText.Escaped($"{option} {file}: cannot write it ({OutputPath.InUserWords(exception.Message, file.FullName, file.ToString())})."));
                code = ExitCodes.WriteFailed;
            }
            catch (Exception exception) when (exception is not OutOfMemoryException)
            {
                unexpected ??= System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(exception);
            }

            _done++;
        }

        unexpected?.Throw();
        return code;
    }
}
