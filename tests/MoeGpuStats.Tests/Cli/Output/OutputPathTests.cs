using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary><see cref="OutputPath"/> called directly: the checks of an output's name, and the temporaries of its writes.</summary>
public sealed class OutputPathTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-output-path-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>An empty or blank name is no file name, said so, not "not a usable file name" nor a file named by spaces.</summary>
    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public void ABlankNameAsksForAFileName(string name) =>
        Assert.Equal("give a file name.", OutputPath.Problem(name));

    /// <summary>A name of the file system's most bytes, 255, is written (its temporary is cut short); one byte more is refused with its length.</summary>
    [Fact]
    public void ANameOfTheFileSystemsMostBytesIsAnOutputFile()
    {
        Assert.Null(OutputPath.Problem(Path.Combine(_folder.FullName, new string('a', 250) + ".json")));
        Assert.Equal(
            "the file name is 256 bytes long; file systems take at most 255.",
            OutputPath.Problem(Path.Combine(_folder.FullName, new string('a', 251) + ".json")));
    }

    /// <summary>A missing folder is named as the user gave it: a relative one as given, not resolved against the working folder.</summary>
    [Fact]
    public void AMissingFolderIsNamedAsGiven()
    {
        var missing = $"moegs-missing-{Guid.NewGuid():N}";

        Assert.Equal($"the folder {missing} does not exist.", OutputPath.Problem(Path.Combine(missing, "run.json")));
        Assert.Equal($"the folder {Path.Combine(_folder.FullName, missing)} does not exist.", OutputPath.Problem(Path.Combine(_folder.FullName, missing, "run.json")));
    }

    /// <summary>A plot's format is its extension's, in any case: PNG, or JPEG as .jpg or .jpeg; any other extension writes no plot.</summary>
    [Theory]
    [InlineData("load.png", "Png")]
    [InlineData("LOAD.PNG", "Png")]
    [InlineData("load.jpg", "Jpeg")]
    [InlineData("load.Jpg", "Jpeg")]
    [InlineData("load.jpeg", "Jpeg")]
    [InlineData("LOAD.JPEG", "Jpeg")]
    [InlineData("load.gif", null)]
    [InlineData("load.png.txt", null)]
    [InlineData("png", null)]
    public void APlotsFormatIsItsExtensionsInAnyCase(string name, string? format)
    {
        Assert.Equal(format, OutputPath.FormatOf(name)?.ToString());
        Assert.Equal(format is null, OutputPath.PlotFormatProblem(name) is not null);
    }

    /// <summary>
    /// A killed run's temporary of the target is removed, and one of another target whose name starts with the target's
    /// (<c>run.json.1</c> beside <c>run.json</c>), which the same wildcard finds, stays.
    /// </summary>
    [Fact]
    public void OnlyTheTargetsOwnStaleTemporariesAreRemoved()
    {
        var target = Path.Combine(_folder.FullName, "run.json");
        var own = Path.Combine(_folder.FullName, $".run.json.{int.MaxValue}.{Guid.NewGuid():N}.tmp");
        var other = Path.Combine(_folder.FullName, $".run.json.1.{int.MaxValue}.{Guid.NewGuid():N}.tmp");
        File.WriteAllText(own, "{");
        File.WriteAllText(other, "{");

        Assert.Equal(1, OutputPath.RemoveStaleTemporaries(target));

        Assert.False(File.Exists(own), "the target's temporary of a process that is gone stays");
        Assert.True(File.Exists(other), "the temporary of run.json.1 was removed as run.json's");
    }

    /// <summary>
    /// A system's message as a clause of the line that names the file: the target named as given (its temporary too), without
    /// .NET's trailing <c> : 'path'</c> or closing period.
    /// </summary>
    [Fact]
    public void AMessageBecomesAClauseNamingTheFileAsGiven()
    {
        var full = Path.Combine(_folder.FullName, "run.json");
        var temporary = Path.Combine(_folder.FullName, $".run.json.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

        Assert.Equal("Disk quota exceeded", OutputPath.InUserWords("Disk quota exceeded.", full, "run.json"));
        Assert.Equal("No space left on device", OutputPath.InUserWords($"No space left on device : '{full}'", full, "run.json"));
        Assert.Equal("Could not write run.json", OutputPath.InUserWords($"Could not write {temporary}.", full, "run.json"));
    }
}
