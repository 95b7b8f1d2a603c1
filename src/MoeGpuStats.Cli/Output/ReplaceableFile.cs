using Mono.Unix.Native;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// Whether an existing file can be replaced by a rename, which is how every output is written (<see cref="OutputPath"/>),
/// where creating a file beside it would succeed: so that a run does not end in a write that fails after all its work.
/// </summary>
internal static class ReplaceableFile
{
    /// <summary>
    /// Why the existing file at <paramref name="full"/> cannot be replaced by a rename, in the user's words, or null: a
    /// file mounted over (a container's bind mount of one file; the rename fails "Device or resource busy"), or another
    /// user's file in a sticky folder (as /tmp is), which only its owner, the folder's or root may replace.
    /// </summary>
    /// <param name="full">The target's full path; a file is there.</param>
    public static string? Problem(string full)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        var folder = Path.GetDirectoryName(full)!;
        if (MountPoints().Contains(Path.Combine(RealFolder(folder), Path.GetFileName(full))))
        {
            return "a file is mounted there (a bind mount, as a container's): a rename cannot replace it; give another name.";
        }

        return Syscall.stat(folder, out var dir) == 0 && Syscall.lstat(full, out var file) == 0
            && AnotherUsersInStickyFolder(dir.st_mode, dir.st_uid, file.st_uid, Syscall.geteuid())
                ? $"the file is another user's, in a sticky folder ({folder}, as /tmp is), where only its owner may replace it; give another name."
                : null;
    }

    /// <summary>Whether <paramref name="user"/> may not replace a file of <paramref name="fileOwner"/> in a folder of that mode and owner (sticky: only the file's or the folder's owner, or root).</summary>
    internal static bool AnotherUsersInStickyFolder(FilePermissions folderMode, uint folderOwner, uint fileOwner, uint user) =>
        user != 0 && (folderMode & FilePermissions.S_ISVTX) != 0 && fileOwner != user && folderOwner != user;

    /// <summary>
    /// <paramref name="folder"/> as the system names it, every link on its way followed (as mountinfo names mount
    /// points): what /proc/self/fd says of the folder opened; the folder as given where it cannot be opened.
    /// </summary>
    private static string RealFolder(string folder)
    {
        var descriptor = Syscall.open(folder, OpenFlags.O_RDONLY | OpenFlags.O_DIRECTORY);
        if (descriptor < 0)
        {
            return folder;
        }

        try
        {
            return new FileInfo($"/proc/self/fd/{descriptor}").LinkTarget ?? folder;
        }
        finally
        {
            Syscall.close(descriptor);
        }
    }

    /// <summary>The mount points of this process's mount namespace, as /proc/self/mountinfo's fifth field gives them (octal escapes undone).</summary>
    private static HashSet<string> MountPoints()
    {
        var points = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            foreach (var line in File.ReadLines("/proc/self/mountinfo"))
            {
                if (line.Split(' ') is { Length: > 4 } fields)
                {
                    points.Add(Unescaped(fields[4]));
                }
            }
        }
        catch (IOException)
        {
            // No /proc: nothing known to be mounted.
        }

        return points;
    }

    /// <summary>A mountinfo field with its octal escapes (<c>\040</c> a space, <c>\012</c> a newline, <c>\134</c> a backslash) undone.</summary>
    private static string Unescaped(string field) =>
        System.Text.RegularExpressions.Regex.Replace(field, @"\\([0-7]{3})", match => ((char)Convert.ToInt32(match.Groups[1].Value, 8)).ToString());
}
