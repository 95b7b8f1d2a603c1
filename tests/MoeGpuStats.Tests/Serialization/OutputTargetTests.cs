using System.Net.Sockets;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>Which names a file may replace: none in /dev, /proc or /sys (/dev/shm aside), and no device, pipe or socket, or link to one.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class OutputTargetTests : IDisposable
{
    private const string NotAFile = ", not a file: the write would replace it with a file";

    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-output-target-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>
    /// A name in a system folder is refused by the folder, with what it names, also through a linked folder; a folder
    /// whose name only starts as theirs is another, and /dev/shm is a place for files.
    /// </summary>
    [Fact]
    public void ANameInASystemFolderIsRefusedByItsFolder()
    {
        const string Proc = "is in /proc, the system's own names (processes, the kernel's settings), not a file a write may replace";
        const string Sys = "is in /sys, the system's own names (the kernel's objects), not a file a write may replace";
        Directory.CreateSymbolicLink(Path.Combine(_folder.FullName, "kernel"), "/sys");

        Assert.Equal("is in /dev, the system's own names (devices, the links of /dev/stdout), not a file a write may replace", OutputTarget.Problem("/dev/null"));
        Assert.Equal(Proc, OutputTarget.Problem("/proc/moegs-test.json"));
        Assert.Equal(Sys, OutputTarget.Problem("/sys/moegs-test.json"));
        Assert.Equal(Sys, OutputTarget.Problem(Path.Combine(_folder.FullName, "kernel", "moegs-test.json")));
        Assert.Null(OutputTarget.Problem("/dev/shm/moegs-test.json"));
        Assert.Null(OutputTarget.Problem("/devices-moegs-test/run.json"));
        Assert.Null(OutputTarget.Problem("/system-moegs-test/run.json"));
        Assert.Null(OutputTarget.Problem("/procedures-moegs-test/run.json"));
    }

    /// <summary>A device, a pipe or a socket is named by its kind, a link to one as a link to it; a file, a folder, a new name and a dangling link are no problem.</summary>
    [Fact]
    public void ADevicePipeOrSocketIsNamedByItsKind()
    {
        string In(string name) => Path.Combine(_folder.FullName, name);
        File.CreateSymbolicLink(In("null.json"), "/dev/null");
        Assert.Equal(0, Mono.Unix.Native.Syscall.mkfifo(In("fifo.json"), Mono.Unix.Native.FilePermissions.DEFFILEMODE));
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(In("socket.json")));
        File.CreateSymbolicLink(In("to-socket.json"), "socket.json");
        File.WriteAllText(In("file.json"), "{}");
        File.CreateSymbolicLink(In("to-file.json"), "file.json");
        File.CreateSymbolicLink(In("dangling.json"), "missing.json");

        Assert.Equal("is a link to a character device" + NotAFile, OutputTarget.Problem(In("null.json")));
        Assert.Equal("is a named pipe" + NotAFile, OutputTarget.Problem(In("fifo.json")));
        Assert.Equal("is a socket" + NotAFile, OutputTarget.Problem(In("socket.json")));
        Assert.Equal("is a link to a socket" + NotAFile, OutputTarget.Problem(In("to-socket.json")));
        Assert.All(new[] { "file.json", "to-file.json", "dangling.json", "new.json" }, name => Assert.Null(OutputTarget.Problem(In(name))));
        Assert.Null(OutputTarget.Problem(_folder.FullName));
    }
}
