using System.Globalization;
using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

public sealed class OutputFilesTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-outputs-");

    public void Dispose() => _folder.Delete(recursive: true);

    [Fact]
    public void AFailedWriteIsOneLineAndTheLaterFilesAreStillWritten()
    {
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        var first = new FileInfo(Path.Combine(_folder.FullName, "window.json"));
        var second = new FileInfo(Path.Combine(_folder.FullName, "snapshot.json"));

        var code = new OutputFiles(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false))
            .Add("--window-load", first, "window load", _ => throw new IOException("No space left on device : '" + first.FullName + "'"))
            .Add("--plot", null, "plot", _ => throw new InvalidOperationException("a file not asked for is not written"))
            .Add("--save", second, "snapshot", full => File.WriteAllText(full, "{}"))
            .WriteAll();

        Assert.Equal(ExitCodes.WriteFailed, code);
        var lines = error.ToString().TrimEnd().Split('\n');
        Assert.Equal(2, lines.Length);
        // .NET's " : 'path'" names the file the line names already.
        Assert.Equal($"--window-load {first}: cannot write it (No space left on device).", lines[0]);
        Assert.Equal($"snapshot: {second.FullName}", lines[1]);
        Assert.False(first.Exists);
        Assert.Equal("{}", File.ReadAllText(second.FullName));
    }

    /// <summary>
    /// The line that says where a file went names it in full, a relative name too (the folder it was written in), and each file is
    /// written to its full path.
    /// </summary>
    [Fact]
    public void TheLineSaysWhereAFileWentInFull()
    {
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        var relative = new FileInfo($"moegs-relative-{Guid.NewGuid():N}.json");
        var written = new List<string>();

        var code = new OutputFiles(new CliConsole(TextWriter.Null, error, ErrorIsTerminal: false))
            .Add("--save", relative, "snapshot", written.Add)
            .WriteAll();

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Equal([Path.GetFullPath(relative.ToString())], written);
        Assert.Equal($"snapshot: {Path.GetFullPath(relative.ToString())}", error.ToString().TrimEnd());
    }

    /// <summary>A writer that fails for another reason than the disk (a picture the plotting library cannot draw) is rethrown, after the later files are written.</summary>
    [Fact]
    public void AnUnexpectedErrorIsRethrownAfterTheLaterFilesAreWritten()
    {
        var plot = new FileInfo(Path.Combine(_folder.FullName, "plot.png"));
        var saved = new FileInfo(Path.Combine(_folder.FullName, "snapshot.json"));
        var files = new OutputFiles(new CliConsole(TextWriter.Null, TextWriter.Null, ErrorIsTerminal: false))
            .Add("--plot", plot, "plot", _ => throw new ArgumentException("min must be a real number"))
            .Add("--save", saved, "snapshot", full => File.WriteAllText(full, "{}"));

        var error = Assert.Throws<ArgumentException>(() => files.WriteAll());

        Assert.Equal("min must be a real number", error.Message);
        Assert.Equal("{}", File.ReadAllText(saved.FullName));
    }
}
