namespace MoeGpuStats.Serialization;

/// <summary>
/// A file written whole or not at all: a temporary beside it, flushed to disk, then renamed over it, so that a reader
/// never sees half a file. A file it replaces keeps its permissions, as editors and <c>sed -i</c> keep them, so that a
/// private (0600) snapshot stays private; a new one gets the umask's.
/// </summary>
internal static class AtomicFile
{
    /// <summary>
    /// Writes <paramref name="full"/> through <paramref name="temporary"/> (a name in the same folder that no file has),
    /// which is removed whatever happens once this call created it (a file already there under that name is refused and
    /// left as it is). Errors name the temporary; the callers say them in their users' words.
    /// </summary>
    public static void Write(string full, string temporary, Action<Stream> write)
    {
        // A name already taken throws here, before the try: that file is not this call's to remove.
        var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        try
        {
            using (stream)
            {
                KeepMode(stream, full);
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    /// <summary>
    /// Gives the temporary behind <paramref name="stream"/> the mode of <paramref name="target"/> where that exists (on
    /// Unix), set while the temporary is still empty, so that no byte of a private file is ever readable by others.
    /// </summary>
    private static void KeepMode(FileStream stream, string target)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            File.SetUnixFileMode(stream.SafeFileHandle, File.GetUnixFileMode(target));
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            // No file to replace (or it went meanwhile), or a file system without modes: the umask's mode.
        }
    }
}
