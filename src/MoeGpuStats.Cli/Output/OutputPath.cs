using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Files a command writes (<c>--save</c>, <c>--plot</c>, <c>--window-load</c>, <c>merge -o</c>): checked before the run,
/// written through a hidden temporary file beside the target (<c>.NAME.PID.GUID.tmp</c>, NAME cut to
/// <see cref="MaxNameBytes"/> so that the temporary's name stays within the file system's 255 bytes
/// wherever the target's does), and the temporaries of killed runs removed.
/// </summary>
internal static partial class OutputPath
{
    /// <summary>The most UTF-8 bytes of the target's name a temporary's name keeps: with the rest (about 50 bytes) it stays far below 255.</summary>
    public const int MaxNameBytes = 100;

    /// <summary>The longest file name (one path component) Linux's file systems and NTFS take, in bytes.</summary>
    private const int MaxFileNameBytes = 255;

    /// <summary>Why <paramref name="path"/> cannot be written, in the user's words; null when it can.</summary>
    /// <param name="path">The path as given.</param>
    /// <param name="formatProblem">Why the name does not say a format the option writes, or null when it does; null when any name goes.</param>
    public static string? Problem(string path, Func<string, string?>? formatProblem = null)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            return "give a file name.";
        }

        if (path.Contains('\uFFFD', StringComparison.Ordinal))
        {
            // The file would be written under \uFFFD itself, not under the bytes given.
            return "the name holds \uFFFD, which may stand for bytes that are not UTF-8 (moegs reads names as UTF-8, so the file would get another name); give a name without it.";
        }

        if (path == "-")
        {
            // Standard output to many tools; here it would be a file named "-" where the command runs.
            return "moegs does not write standard output by this name; leave the option out (--json prints on standard output), or give a file name (./- for a file named -).";
        }

        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception exception) when (exception is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return "not a usable file name.";
        }

        if (Directory.Exists(full))
        {
            return "is a folder; give a file name.";
        }

        if (SpecialFile(full) is { } special)
        {
            return special;
        }

        if (formatProblem?.Invoke(full) is { } format)
        {
            return format;
        }

        var name = Encoding.UTF8.GetByteCount(Path.GetFileName(full));
        if (name > MaxFileNameBytes)
        {
            return $"the file name is {name:N0} bytes long; file systems take at most {MaxFileNameBytes}.";
        }

        var folder = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder))
        {
            var given = Path.GetDirectoryName(path);
            var shown = string.IsNullOrEmpty(given) ? folder : given;
            // A file, or a link that leads to no folder (a loop of links).
            return File.Exists(folder) ? $"{shown} is not a folder." : $"the folder {shown} does not exist.";
        }

        var probe = TemporaryFor(full);
        try
        {
            using (File.Create(probe, 1, FileOptions.DeleteOnClose))
            {
            }

            return File.Exists(full) ? ReplaceableFile.Problem(full) : null;
        }
        catch (UnauthorizedAccessException)
        {
            return $"no permission to create files in {folder}.";
        }
        catch (IOException exception)
        {
            return $"cannot create files in {folder} ({InUserWords(exception.Message, full, path)}).";
        }
    }

    /// <summary>Why <paramref name="full"/> names no file a write may replace (<see cref="OutputTarget"/>), with what to do, or null.</summary>
    private static string? SpecialFile(string full) =>
        OutputTarget.Problem(full) is { } problem ? $"{problem}; give a file name, or leave the option out to write nothing." : null;

    /// <summary>Why a plot cannot be written under <paramref name="path"/>'s name, or null.</summary>
    public static string? PlotFormatProblem(string path) =>
        FormatOf(path) is null ? "the plot is written as PNG (.png) or JPEG (.jpg, .jpeg); give a name ending in one of those." : null;

    /// <summary>The picture format a plot path asks for, or null when we write none of that kind.</summary>
    public static PlotFormat? FormatOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".png" => PlotFormat.Png,
        ".jpg" or ".jpeg" => PlotFormat.Jpeg,
        _ => null,
    };

    /// <summary>Writes <paramref name="path"/> as an <see cref="Serialization.AtomicFile"/>, through a temporary named as <see cref="RemoveStaleTemporaries"/> finds it.</summary>
    public static void WriteAtomically(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        Serialization.AtomicFile.Write(full, TemporaryFor(full), write);
    }

    /// <summary>
    /// Deletes the temporaries of <paramref name="path"/> left by processes that no longer run (killed
    /// during a write). A temporary whose process id now belongs to a process started after the file
    /// was last written is stale too: the id was reused.
    /// </summary>
    /// <returns>How many were removed.</returns>
    public static int RemoveStaleTemporaries(string path)
    {
        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        var name = NameInTemporary(Path.GetFileName(full));
        var removed = 0;
        IEnumerable<FileInfo> candidates;
        try
        {
            candidates = new DirectoryInfo(folder).EnumerateFiles($".{name}.*.tmp").ToArray();
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return 0;
        }

        foreach (var file in candidates)
        {
            var match = TemporaryPattern().Match(file.Name);
            if (!match.Success || match.Groups["name"].Value != name || !int.TryParse(match.Groups["pid"].Value, out var pid) || IsWriting(pid, file.LastWriteTimeUtc))
            {
                continue;
            }

            try
            {
                file.Delete();
                removed++;
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
            {
                // Another run cleaning the same folder, or a folder we may not write: the save reports that.
            }
        }

        return removed;
    }

    /// <summary>
    /// An exception's message as a clause in a line that names the file: any temporary of <paramref name="full"/> named
    /// as the user named the target, without .NET's <c> : 'path'</c> naming the target again, nor a closing period.
    /// </summary>
    public static string InUserWords(string message, string full, string given)
    {
        var name = Path.GetFileName(full);
        var withoutTemporaries = TemporaryPattern().Replace(message, match => match.Groups["name"].Value == NameInTemporary(name) ? name : match.Groups["name"].Value);
        var words = withoutTemporaries.Replace(full, given, StringComparison.Ordinal).Trim();
        var target = $" : '{given}'";
        return (words.EndsWith(target, StringComparison.Ordinal) ? words[..^target.Length] : words).TrimEnd('.');
    }

    private static string TemporaryFor(string full) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{NameInTemporary(Path.GetFileName(full))}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    /// <summary>The target's name as its temporaries carry it: whole, or its first characters within <see cref="MaxNameBytes"/> UTF-8 bytes.</summary>
    public static string NameInTemporary(string name)
    {
        if (System.Text.Encoding.UTF8.GetByteCount(name) <= MaxNameBytes)
        {
            return name;
        }

        var length = 0;
        var bytes = 0;
        foreach (var rune in name.EnumerateRunes())
        {
            if (bytes + rune.Utf8SequenceLength > MaxNameBytes)
            {
                break;
            }

            bytes += rune.Utf8SequenceLength;
            length += rune.Utf16SequenceLength;
        }

        return name[..length];
    }

    private static bool IsWriting(int pid, DateTime lastWriteUtc)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return process.StartTime.ToUniversalTime() <= lastWriteUtc;
        }
        catch (Exception exception) when (exception is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            return false;
        }
    }

    [GeneratedRegex(@"\.(?<name>[^/\\]+)\.(?<pid>\d+)\.[0-9a-f]{32}\.tmp")]
    private static partial Regex TemporaryPattern();
}

/// <summary>The picture formats <c>--plot</c> writes.</summary>
internal enum PlotFormat
{
    Png,
    Jpeg,
}
