using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>A file written whole or not at all, through a temporary that does not outlive the write.</summary>
public sealed class AtomicFileTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-atomic-file-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>A write that fails partway leaves the file it would replace as it was, and no temporary beside it.</summary>
    [Fact]
    public void AWriteThatFailsLeavesTheFileAsItWasAndNoTemporary()
    {
        var (target, temporary) = (Path.Combine(_folder.FullName, "target.json"), Path.Combine(_folder.FullName, ".target.json.tmp"));
        File.WriteAllText(target, "before");

        var error = Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(target, temporary, stream =>
        {
            stream.Write("half of it"u8);
            throw new InvalidOperationException("failed partway");
        }));

        Assert.Equal("failed partway", error.Message);
        Assert.Equal("before", File.ReadAllText(target));
        Assert.Equal(["target.json"], _folder.GetFiles().Select(f => f.Name));
    }

    /// <summary>A write replaces the file whole, and a new file is made, each with nothing beside it.</summary>
    [Fact]
    public void AWriteReplacesTheFileOrMakesIt()
    {
        var (target, fresh) = (Path.Combine(_folder.FullName, "target.json"), Path.Combine(_folder.FullName, "fresh.json"));
        File.WriteAllText(target, "a longer content than the new one");

        AtomicFile.Write(target, Path.Combine(_folder.FullName, ".1.tmp"), stream => stream.Write("new"u8));
        AtomicFile.Write(fresh, Path.Combine(_folder.FullName, ".2.tmp"), stream => stream.Write("made"u8));

        Assert.Equal(("new", "made"), (File.ReadAllText(target), File.ReadAllText(fresh)));
        Assert.Equal(new[] { "fresh.json", "target.json" }, _folder.GetFiles().Select(f => f.Name).Order());
    }

    /// <summary>A temporary name that a file already has is refused, not written over nor removed: the target and that file stay as they were.</summary>
    [Fact]
    public void ATemporaryNameThatIsTakenIsRefused()
    {
        var (target, temporary) = (Path.Combine(_folder.FullName, "target.json"), Path.Combine(_folder.FullName, ".target.json.tmp"));
        File.WriteAllText(target, "before");
        File.WriteAllText(temporary, "another's");

        Assert.Throws<IOException>(() => AtomicFile.Write(target, temporary, stream => stream.Write("new"u8)));

        Assert.Equal("before", File.ReadAllText(target));
        Assert.Equal("another's", File.ReadAllText(temporary));
    }
}
