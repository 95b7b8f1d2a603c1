namespace MoeGpuStats.Cli;

/// <summary>What the process's exit code means.</summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>An input file is missing, unreadable, malformed, or unfit for the command (snapshots of different models to merge).</summary>
    public const int BadInput = 1;

    /// <summary>The arguments are invalid.</summary>
    public const int Usage = 2;

    /// <summary>MOEGS_ACCELERATOR names an accelerator that is not present.</summary>
    public const int NoAccelerator = 3;

    /// <summary>An output file or standard output could not be written (a full disk, a folder removed during the run); the other outputs were written.</summary>
    public const int WriteFailed = 4;

    /// <summary>A run stopped by Ctrl-C or SIGTERM after reporting and saving what it had recorded (128 + SIGINT, as shells count).</summary>
    public const int Interrupted = 130;
}
