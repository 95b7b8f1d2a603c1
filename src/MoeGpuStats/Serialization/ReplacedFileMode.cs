namespace MoeGpuStats.Serialization;

/// <summary>
/// The permissions of a file that a write replaces (through a temporary renamed over it): kept, as editors and
/// <c>sed -i</c> keep them, so that a private (0600) snapshot stays private and a new one gets the umask's.
/// </summary>
internal static class ReplacedFileMode
{
    /// <summary>
    /// Creates <paramref name="temporary"/> for writing with the mode of <paramref name="target"/> where that exists (on
    /// Unix), set while the temporary is still empty, so that no byte of a private file is ever readable by others.
    /// </summary>
    public static FileStream CreateTemporary(string temporary, string target)
    {
        var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        if (OperatingSystem.IsWindows())
        {
            return stream;
        }

        try
        {
            File.SetUnixFileMode(stream.SafeFileHandle, File.GetUnixFileMode(target));
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            // No file to replace (or it went meanwhile), or a file system without modes: the umask's mode.
        }

        return stream;
    }
}
