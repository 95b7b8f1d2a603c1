using MoeGpuStats.Cli.Output;
using Mono.Unix.Native;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>An existing output that a rename cannot replace is refused before the run, not after all its work.</summary>
public sealed class ReplaceableFileTests
{
    private const FilePermissions Sticky = FilePermissions.S_ISVTX | FilePermissions.ACCESSPERMS;

    /// <summary>In a sticky folder only the file's owner, the folder's or root replaces a file; elsewhere anyone who may create files there.</summary>
    [Theory]
    [InlineData(Sticky, 0u, 1001u, 1000u, true)]
    [InlineData(Sticky, 0u, 1000u, 1000u, false)]
    [InlineData(Sticky, 1000u, 1001u, 1000u, false)]
    [InlineData(Sticky, 0u, 1001u, 0u, false)]
    [InlineData(FilePermissions.ACCESSPERMS, 0u, 1001u, 1000u, false)]
    public void AnotherUsersFileInAStickyFolderIsTheirs(FilePermissions folderMode, uint folderOwner, uint fileOwner, uint user, bool refused) =>
        Assert.Equal(refused, ReplaceableFile.AnotherUsersInStickyFolder(folderMode, folderOwner, fileOwner, user));

    /// <summary>
    /// A file mounted over (a container's bind mount of one file) is refused by the check every output takes before the
    /// run, through a link to its folder too; the file mounted from, which a rename replaces, is not.
    /// </summary>
    [Fact]
    public void AFileMountedOverIsRefusedBeforeTheRun()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && Syscall.geteuid() == 0, "needs root on Linux to bind-mount a file");
        var folder = Directory.CreateTempSubdirectory("moegs-mounted-");
        var target = Path.Combine(folder.FullName, "run.json");
        var source = Path.Combine(folder.FullName, "source.json");
        File.WriteAllText(target, "kept");
        File.WriteAllText(source, "mounted");
        var linked = Path.Combine(Path.GetTempPath(), $"moegs-link-{Guid.NewGuid():N}");
        Directory.CreateSymbolicLink(linked, folder.FullName);
        var mounted = false;
        try
        {
            ExternalProgram.Run("mount", $"--bind {source} {target}", out var code);
            Assert.SkipUnless(code == 0, "mount --bind is not permitted here");
            mounted = true;

            Assert.Equal("a file is mounted there (a bind mount, as a container's): a rename cannot replace it; give another name.", OutputPath.Problem(target));
            Assert.Equal(OutputPath.Problem(target), OutputPath.Problem(Path.Combine(linked, "run.json")));
            Assert.Null(OutputPath.Problem(source));
        }
        finally
        {
            if (mounted)
            {
                ExternalProgram.Run("umount", target, out _);
            }

            Directory.Delete(linked);
            folder.Delete(recursive: true);
        }
    }
}
