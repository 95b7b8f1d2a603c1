using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>Which file a name reaches: an input's every link followed, an output's folder's links only, an input's data by its inode.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class FileIdentityTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-file-identity-");

    /// <summary>The folder, through no link of its own (the temporary folder, a fresh one of the system's).</summary>
    private readonly string _real;

    public FileIdentityTests() => _real = _folder.FullName;

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>
    /// An input reached through a chain of links, each relative to its own folder (one in a linked folder), is the file
    /// at the chain's end; so is a name with <c>..</c> in it.
    /// </summary>
    [Fact]
    public void AnInputIsTheFileAtTheEndOfItsLinks()
    {
        var data = _folder.CreateSubdirectory("data");
        var file = Path.Combine(data.FullName, "run.json");
        File.WriteAllText(file, "{}");
        File.CreateSymbolicLink(Path.Combine(data.FullName, "one.json"), "run.json");
        File.CreateSymbolicLink(Path.Combine(_folder.FullName, "two.json"), "data/one.json");
        Directory.CreateSymbolicLink(Path.Combine(_folder.FullName, "linked"), "data");
        File.CreateSymbolicLink(Path.Combine(data.FullName, "three.json"), "../two.json");

        var expected = Path.Combine(_real, "data", "run.json");
        Assert.Equal(expected, FileIdentity.OfInput(Path.Combine(_folder.FullName, "linked", "three.json")));
        Assert.Equal(expected, FileIdentity.OfInput(Path.Combine(_folder.FullName, "two.json")));
        Assert.Equal(expected, FileIdentity.OfInput(Path.Combine(_folder.FullName, "data", "..", "linked", "run.json")));
    }

    /// <summary>An output's folder is followed through its links, its own name is not: the write replaces a link itself.</summary>
    [Fact]
    public void AnOutputIsTheNameInItsRealFolder()
    {
        var data = _folder.CreateSubdirectory("data");
        File.WriteAllText(Path.Combine(data.FullName, "run.json"), "{}");
        File.CreateSymbolicLink(Path.Combine(data.FullName, "link.json"), "run.json");
        Directory.CreateSymbolicLink(Path.Combine(_folder.FullName, "linked"), "data");

        Assert.Equal(Path.Combine(_real, "data", "link.json"), FileIdentity.OfOutput(Path.Combine(_folder.FullName, "linked", "link.json")));
        Assert.Equal(Path.Combine(_real, "data", "new.json"), FileIdentity.OfOutput(Path.Combine(_folder.FullName, "linked", "new.json")));
    }

    /// <summary>A cycle of links is given up on, not followed for ever.</summary>
    [Fact]
    public void ACycleOfLinksEnds()
    {
        File.CreateSymbolicLink(Path.Combine(_folder.FullName, "a.json"), "b.json");
        File.CreateSymbolicLink(Path.Combine(_folder.FullName, "b.json"), "a.json");

        Assert.StartsWith(_real, FileIdentity.OfInput(Path.Combine(_folder.FullName, "a.json")), StringComparison.Ordinal);
    }

    /// <summary>A hard link's data is the file it links, as a symbolic link's is; another file's is not.</summary>
    [Fact]
    public void AHardLinkIsTheDataItLinks()
    {
        var (file, hard, symbolic, other) = (Path.Combine(_folder.FullName, "run.json"), Path.Combine(_folder.FullName, "hard.json"), Path.Combine(_folder.FullName, "symbolic.json"), Path.Combine(_folder.FullName, "other.json"));
        File.WriteAllText(file, "{}");
        File.WriteAllText(other, "{}");
        Assert.Equal(0, Mono.Unix.Native.Syscall.link(file, hard));
        File.CreateSymbolicLink(symbolic, file);

        Assert.Equal(FileIdentity.OfInputData(file), FileIdentity.OfInputData(hard));
        Assert.Equal(FileIdentity.OfInputData(file), FileIdentity.OfInputData(symbolic));
        Assert.NotEqual(FileIdentity.OfInputData(file), FileIdentity.OfInputData(other));
        Assert.NotEqual(FileIdentity.OfInput(file), FileIdentity.OfInput(hard));
    }
}
