using System.Globalization;
using Humanizer;

namespace MoeGpuStats.Cli.Input;

/// <summary>Opening the file a command reads, with one line naming it when that fails (exit code 1 follows).</summary>
internal static class InputFile
{
    /// <summary>
    /// Reads <paramref name="path"/> with <paramref name="read"/>; on failure writes one line naming the
    /// file and returns false. <paramref name="read"/> reports a malformed file as an
    /// <see cref="InvalidDataException"/> whose message names it.
    /// </summary>
    /// <param name="console">Where the line goes.</param>
    /// <param name="path">The file as the user gave it.</param>
    /// <param name="expected">What the command reads, for a folder given instead ("a .npy file").</param>
    /// <param name="read">Reads the file at a path.</param>
    /// <param name="value">What <paramref name="read"/> returned.</param>
    /// <param name="option">The option that named the file, which begins the line ("--current"); null for a command's argument.</param>
    public static bool TryRead<T>(CliConsole console, FileInfo path, string expected, Func<string, T> read, out T value, string? option = null)
    {
        value = default!;
        void Fail(string line) => console.Error.WriteLine(option is null ? line : $"{option} {line}");
        if (Directory.Exists(path.FullName))
        {
            Fail($"{UnsafeText.Escaped(path.ToString())}: is a folder; give {expected}.");
            return false;
        }

        // A pipe or a device is refused before it is opened, which would wait for a writer; a name that links to
        // one (/dev/stdin, /dev/fd/3, a shell's <(...)) is examined where it leads.
        if (IsPipeOrDevice(path.FullName))
        {
            Fail($"{UnsafeText.Escaped(path.ToString())}: is a pipe or a device; give {expected}.");
            return false;
        }

        if (new FileInfo(path.FullName) is { Exists: true, Length: 0 })
        {
            Fail(HasBytes(path.FullName)
                ? $"{UnsafeText.Escaped(path.ToString())}: reports a size of 0 bytes yet holds some (a /proc file, written as it is read); give {expected}."
                : $"{UnsafeText.Escaped(path.ToString())}: is empty (0 bytes); give {expected}.");
            return false;
        }

        try
        {
            value = read(path.ToString());
            return true;
        }
        catch (Exception exception) when (exception is FileNotFoundException or DirectoryNotFoundException)
        {
            // A relative name is looked up where the program runs, which the user may not have in mind.
            var where = Path.IsPathRooted(path.ToString()) ? "" : $" in {Directory.GetCurrentDirectory()}";
            // "-" is standard input to many tools; moegs reads files alone (a trace is read twice, a snapshot by its length).
            Fail(path.ToString() == "-"
                ? $"-: moegs does not read standard input; give {expected} by its path."
                : UnsafeText.Escaped($"{path}: no such file{where}{NotUtf8Hint(path.ToString())}."));
        }
        catch (UnauthorizedAccessException)
        {
            Fail($"{UnsafeText.Escaped(path.ToString())}: no permission to read it.");
        }
        catch (InvalidDataException exception)
        {
            Fail(ErrorText.Of(exception));
        }
        catch (NotSupportedException)
        {
            Fail(NotAFile(path));
        }
        catch (EndOfStreamException)
        {
            // A regular file that ends before its size: cut while it was read, or a /sys file, whose size is a page.
            Fail($"{UnsafeText.Escaped(path.ToString())}: ends before the {new FileInfo(path.FullName).Length:N0} bytes its size claims (a file cut while it was read, or a /sys file); give {expected}.");
        }
        catch (IOException exception)
        {
            Fail($"{UnsafeText.Escaped(path.ToString())}: cannot read it ({ErrorText.Clause(exception)}).");
        }

        return false;
    }

    /// <summary>
    /// Writes a note before <paramref name="path"/> is read whole ahead of a command's work, when it is at least the
    /// given size, so that seconds of silence are not taken for a hang; the note ends with why it is read.
    /// </summary>
    public static Action<long, string> LongReadNote(CliConsole console, FileInfo path) => (bytes, why) =>
    {
        var length = path.Exists ? path.Length : 0;
        if (length >= bytes)
        {
            console.Error.WriteLine($"note: reading {UnsafeText.Escaped(path.Name)} ({ByteSize.FromBytes(length).Humanize("0.#", CultureInfo.InvariantCulture)}) whole {why}.");
        }
    };

    /// <summary>Whether <paramref name="path"/>, its links followed, is something other than a regular file or a folder.</summary>
    private static bool IsPipeOrDevice(string path) =>
        !OperatingSystem.IsWindows()
        && Mono.Unix.Native.Syscall.stat(path, out var stat) == 0
        && (stat.st_mode & Mono.Unix.Native.FilePermissions.S_IFMT) is not (Mono.Unix.Native.FilePermissions.S_IFREG or Mono.Unix.Native.FilePermissions.S_IFDIR);

    /// <summary>Whether a file that reports 0 bytes gives one when read: a kernel's pseudo-file, not an empty file.</summary>
    private static bool HasBytes(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            return stream.ReadByte() >= 0;
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// The whole of <paramref name="path"/>, read never past <paramref name="mostBytes"/> (<see cref="Serialization.BoundedRead"/>):
    /// <paramref name="tooLarge"/> gives the exception for a larger file, given its size in words. A file that ends
    /// before the length it reported (a /sys file, a file cut while it was read) throws
    /// <see cref="EndOfStreamException"/>, which <see cref="TryRead"/> names.
    /// </summary>
    public static ReadOnlyMemory<byte> ReadWhole(string path, long mostBytes, Func<string, Exception> tooLarge)
    {
        using var file = File.OpenRead(path);
        var length = file.Length;
        var bytes = Serialization.BoundedRead.All(file, mostBytes, tooLarge);
        return bytes.Length < length ? throw new EndOfStreamException($"{path}: {bytes.Length:N0} of its {length:N0} bytes read.") : bytes;
    }

    /// <summary>The line for a pipe or a device given where a file is read by position (more than once, or from its end).</summary>
    public static string NotAFile(FileInfo path) =>
        $"{UnsafeText.Escaped(path.ToString())}: cannot be read by position (a pipe or a device?); save it to a file and give that.";

    /// <summary>
    /// Why a name the system does not find may be one it holds after all: .NET reads an argument's bytes that are not
    /// UTF-8 as U+FFFD, so a file so named cannot be given by name; empty for a name without U+FFFD.
    /// </summary>
    private static string NotUtf8Hint(string path) =>
        path.Contains('\uFFFD', StringComparison.Ordinal)
            ? " (the name holds \uFFFD, which may stand for bytes that are not UTF-8: moegs reads names as UTF-8, so rename the file to a UTF-8 name)"
            : "";
}
