namespace MoeGpuStats.Serialization;

/// <summary>
/// The permissions of a file that a write replaces (through a temporary renamed over it): kept, as editors and
/// <c>sed -i</c> keep them, so that a private (0600) snapshot stays private and a new one gets the umask's.
/// </summary>
internal static class ReplacedFileMode
{
    /// <summary>Gives <paramref name="temporary"/> the mode of <paramref name="target"/> where that exists (on Unix).</summary>
    public static void Keep(string target, string temporary)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            File.SetUnixFileMode(temporary, File.GetUnixFileMode(target));
        }
        catch (FileNotFoundException)
        {
            // No file to replace (or it went meanwhile): the new one has the umask's mode.
        }
    }
}
