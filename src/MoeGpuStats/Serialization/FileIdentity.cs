namespace MoeGpuStats.Serialization;

/// <summary>
/// Which file a name reaches, so that a run can refuse an output that would replace one of its
/// inputs (or another output) under another name: a symbolic link, a linked folder, <c>a/../x</c>.
/// </summary>
/// <remarks>
/// .NET has no <c>realpath</c>: the links are followed one component at a time, as far as the path
/// exists. Names are compared as paths, where hard links (a second name of the same data) are apart:
/// an output written over one name replaces that name only, and the data stays reachable under the
/// other. Inputs that must not count twice are compared by their data as well (<see cref="OfInputData"/>).
/// </remarks>
internal static class FileIdentity
{
    /// <summary>The most links followed before giving up on a cycle (Linux's own limit).</summary>
    private const int MaxLinks = 40;

    /// <summary>The file an input name reads: every link followed, the last component's too.</summary>
    public static string OfInput(string path) => Resolved(Path.GetFullPath(path));

    /// <summary>
    /// The data an input name reads, on Unix its device and inode (so a hard link is the file it links,
    /// as a symbolic link is); the path <see cref="OfInput"/> reaches where the file cannot be examined.
    /// </summary>
    public static string OfInputData(string path)
    {
        if (!OperatingSystem.IsWindows() && Mono.Unix.Native.Syscall.stat(path, out var stat) == 0)
        {
            return $"inode {stat.st_dev}:{stat.st_ino}";
        }

        return OfInput(path);
    }

    /// <summary>
    /// The file an output name writes: its folder's links followed, not the last component's, because
    /// outputs are written to a temporary and renamed over the name, which replaces a link itself.
    /// </summary>
    public static string OfOutput(string path)
    {
        var full = Path.GetFullPath(path);
        return Path.Combine(Resolved(Path.GetDirectoryName(full)!), Path.GetFileName(full));
    }

    private static string Resolved(string full)
    {
        for (var links = 0; links < MaxLinks && FollowFirstLink(full) is { } followed; links++)
        {
            full = followed;
        }

        return full;
    }

    /// <summary><paramref name="full"/> with its first component that is a link replaced by the link's target; null when none is.</summary>
    private static string? FollowFirstLink(string full)
    {
        var root = Path.GetPathRoot(full)!;
        var parts = full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var current = root;
        for (var i = 0; i < parts.Length; i++)
        {
            current = Path.Combine(current, parts[i]);
            var info = new FileInfo(current);
            if (info.LinkTarget is { } target)
            {
                var reached = Path.GetFullPath(target, Path.GetDirectoryName(current)!);
                return i + 1 == parts.Length ? reached : Path.Combine(reached, Path.Combine(parts[(i + 1)..]));
            }

            if (!info.Exists && !Directory.Exists(current))
            {
                return null;
            }
        }

        return null;
    }
}
