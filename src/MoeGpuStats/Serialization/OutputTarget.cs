using Mono.Unix;

namespace MoeGpuStats.Serialization;

/// <summary>
/// Whether a name may be replaced by a file. A write goes to a temporary file renamed over the name
/// (<see cref="AtomicFile"/>), which would put a file where a device, a pipe or a socket was (as root,
/// /dev/null itself): so a name in /dev, /proc or /sys, a device, a pipe or a socket, and a link to one
/// of those are refused. A link to a file is the name itself, replaced by the file, its target left
/// alone, as <c>sed -i</c> and <c>rename</c> replace it.
/// </summary>
internal static class OutputTarget
{
    /// <summary>The folders whose names are the system's own, and what they name (/dev/shm, a place for files, aside).</summary>
    private static readonly (string Folder, string Names)[] SystemFolders =
        [("/dev", "devices, the links of /dev/stdout"), ("/proc", "processes, the kernel's settings"), ("/sys", "the kernel's objects")];

    /// <summary>
    /// Why <paramref name="full"/> (a full path) names nothing a file may replace, as a clause after the name
    /// ("is a named pipe, not a file: ..."); null where it may, and where it cannot be examined (a name too long,
    /// a loop of links, a folder that may not be searched), which the write then reports itself.
    /// </summary>
    public static string? Problem(string full)
    {
        if (OperatingSystem.IsWindows())
        {
            return null;
        }

        var resolved = FileIdentity.OfOutput(full);
        if (!resolved.StartsWith("/dev/shm/", StringComparison.Ordinal)
            && SystemFolders.FirstOrDefault(system => resolved.StartsWith(system.Folder + "/", StringComparison.Ordinal)) is ({ } folder, var names))
        {
            return $"is in {folder}, the system's own names ({names}), not a file a write may replace";
        }

        try
        {
            var entry = UnixFileSystemInfo.GetFileSystemEntry(full);
            if (!entry.Exists)
            {
                return null;
            }

            var link = entry.FileType == FileTypes.SymbolicLink;
            var target = link ? new UnixFileInfo(full) : entry;
            var kind = !target.Exists ? null : target.FileType switch
            {
                FileTypes.RegularFile or FileTypes.Directory or FileTypes.SymbolicLink => null,
                FileTypes.CharacterDevice => "a character device",
                FileTypes.BlockDevice => "a block device",
                FileTypes.Fifo => "a named pipe",
                FileTypes.Socket => "a socket",
                _ => "an entry of another type",
            };
            return kind is null ? null : $"is {(link ? "a link to " : "")}{kind}, not a file: the write would replace it with a file";
        }
        catch (Exception exception) when (exception is UnixIOException or IOException or UnauthorizedAccessException or DllNotFoundException or EntryPointNotFoundException)
        {
            // Where Mono.Unix has no native library (a musl system) the name goes unexamined, and the write replaces it.
            return null;
        }
    }
}
