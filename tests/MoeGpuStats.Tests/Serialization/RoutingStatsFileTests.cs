using System.Text.Json;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Serialization;

/// <summary><see cref="RoutingStatsFile"/>: a snapshot saved and loaded back, and a file cut short or too large.</summary>
public sealed class RoutingStatsFileTests
{
    [Fact]
    public void ASavedSnapshotLoadsBackEqualAndLeavesNoTemporaryFile()
    {
        var folder = Directory.CreateTempSubdirectory("moegs-");
        try
        {
            using var stats = new RoutingStats();
            Decisions.Feed(stats, new Random(4), 200);
            var path = Path.Combine(folder.FullName, "snapshot.json");
            RoutingStatsFile.Save(stats, path);
            RoutingStatsFile.Save(stats, path);

            using var loaded = RoutingStatsFile.Load(path);
            Assert.Equal(JsonSerializer.Serialize(stats), JsonSerializer.Serialize(loaded));
            Assert.Equal(["snapshot.json"], folder.GetFiles().Select(f => f.Name));

            // A name near the file system's 255 bytes: the temporary's name must not be longer than 255.
            var longName = new string('n', 245) + ".json";
            RoutingStatsFile.Save(stats, Path.Combine(folder.FullName, longName));
            Assert.Equal(new[] { "snapshot.json", longName }.Order(), folder.GetFiles().Select(f => f.Name).Order());
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>A path through a folder that does not exist is a missing file, as documented (it threw DirectoryNotFoundException).</summary>
    [Fact]
    public void APathThroughAMissingFolderIsAMissingFile()
    {
        var path = Path.Combine(Path.GetTempPath(), $"moegs-missing-{Guid.NewGuid():N}", "run.json");
        var error = Assert.Throws<FileNotFoundException>(() => RoutingStatsFile.Load(path));
        Assert.Equal(path, error.FileName);
        Assert.Equal($"{path}: no such file (its folder does not exist).", error.Message);
    }

    /// <summary>A folder used to give "Access to the path is denied", which is not a documented exception and sent users to its permissions.</summary>
    [Fact]
    public void AFolderIsRefusedAsNotASnapshotFile()
    {
        var folder = Directory.CreateTempSubdirectory("moegs-");
        try
        {
            var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(folder.FullName));
            Assert.Equal($"{folder.FullName}: a folder, not a routing statistics snapshot file; give the file that Save wrote.", error.Message);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>
    /// A file past 2 GiB threw the parser's OverflowException, undocumented and naming nothing; one past
    /// the limit is refused by its length before a byte is read. The file is sparse: it takes no disk.
    /// </summary>
    [Fact]
    public void AFileLargerThanTheLimitIsRefusedByItsLength()
    {
        var folder = Directory.CreateTempSubdirectory("moegs-");
        try
        {
            var path = Path.Combine(folder.FullName, "huge.json");
            using (var file = new FileStream(path, FileMode.CreateNew))
            {
                file.SetLength(3L << 30);
            }

            var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(path));
            Assert.Equal($"{path}: 3,221,225,472 bytes; a routing statistics snapshot file is at most 1,073,741,824 bytes (the largest the library writes is under 600 MB).", error.Message);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    [Fact]
    public void ATruncatedSnapshotGivesAnErrorNamingTheFile()
    {
        var folder = Directory.CreateTempSubdirectory("moegs-");
        try
        {
            using var stats = new RoutingStats();
            Decisions.Feed(stats, new Random(4), 50);
            var path = Path.Combine(folder.FullName, "cut.json");
            RoutingStatsFile.Save(stats, path);
            var text = File.ReadAllText(path);
            File.WriteAllText(path, text[..(text.Length / 2)]);

            var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(path));
            Assert.Contains(path, error.Message);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }
}
