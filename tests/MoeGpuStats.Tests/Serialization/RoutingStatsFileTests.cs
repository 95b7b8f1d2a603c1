using System.Text.Json;
using MoeGpuStats.Serialization;
using Mono.Unix;

namespace MoeGpuStats.Tests.Serialization;

/// <summary><see cref="RoutingStatsFile"/>: a snapshot saved and loaded back, and a file cut short or too large.</summary>
[UseCulture("sv-SE")]
public sealed class RoutingStatsFileTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-");

    public void Dispose() => _folder.Delete(recursive: true);

    [Fact]
    public void ASavedSnapshotLoadsBackEqualAndLeavesNoTemporaryFile()
    {
        using var stats = new RoutingStats();
        Decisions.Feed(stats, new Random(4), 200);
        var path = Path.Combine(_folder.FullName, "snapshot.json");
        RoutingStatsFile.Save(stats, path);
        RoutingStatsFile.Save(stats, path);

        using var loaded = RoutingStatsFile.Load(path);
        Assert.Equal(JsonSerializer.Serialize(stats), JsonSerializer.Serialize(loaded));
        Assert.Equal(["snapshot.json"], _folder.GetFiles().Select(f => f.Name));

        // A name near the file system's 255 bytes: the temporary's name must not be longer than 255.
        var longName = new string('n', 245) + ".json";
        RoutingStatsFile.Save(stats, Path.Combine(_folder.FullName, longName));
        Assert.Equal(new[] { "snapshot.json", longName }.Order(), _folder.GetFiles().Select(f => f.Name).Order());
    }

    /// <summary>A null layer or model is refused naming the argument before any file is made: a null model would have been written as the JSON <c>null</c>.</summary>
    [Fact]
    public void NullStatisticsAreRefusedAndNoFileIsWritten()
    {
        var path = Path.Combine(_folder.FullName, "snapshot.json");

        Assert.Equal("stats", Assert.Throws<ArgumentNullException>(() => RoutingStatsFile.Save((RoutingStats)null!, path)).ParamName);
        Assert.Equal("model", Assert.Throws<ArgumentNullException>(() => RoutingStatsFile.Save((ModelRoutingStats)null!, path)).ParamName);

        Assert.Empty(_folder.GetFileSystemInfos());
    }

    /// <summary>
    /// A file with a layer's <c>total_routings</c> and a model's <c>layers</c> is neither kind: each reader refuses it in its
    /// own words (one file would read as two states), and neither sends it to the other reader as of the other kind.
    /// </summary>
    [Fact]
    public void ASnapshotOfBothKindsIsRefusedByEachReaderAsNeither()
    {
        using var layer = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        layer.RecordRouting([0, 1, 1, 3], tokens: 4, topK: 1);
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
        model.RecordStep([0, 1, 2, 3], tokens: 2, topK: 1);
        var (layerPath, modelPath) = (Path.Combine(_folder.FullName, "layer.json"), Path.Combine(_folder.FullName, "model.json"));
        File.WriteAllText(layerPath, JsonSerializer.Serialize(layer)[..^1] + ", \"layers\": []}");
        File.WriteAllText(modelPath, JsonSerializer.Serialize(model)[..^1] + ", \"total_routings\": 7}");

        const string Both = "(A snapshot has one layer's total_routings or a model's layers, not both: one file would read as two states.)";
        Assert.Equal($"{layerPath}: not a routing statistics snapshot {Both}", Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(layerPath)).Message);
        Assert.Equal($"{modelPath}: not a model's routing statistics snapshot {Both}", Assert.Throws<InvalidDataException>(() => RoutingStatsFile.LoadModel(modelPath)).Message);
    }

    /// <summary>A file replaced by a save keeps its permissions, the library's save and the command line's alike; a new one gets the umask's.</summary>
    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void AReplacedFileKeepsItsMode()
    {
        using var stats = new RoutingStats();
        Decisions.Feed(stats, new Random(4), 20);
        var (library, cli, fresh) = (Path.Combine(_folder.FullName, "library.json"), Path.Combine(_folder.FullName, "cli.json"), Path.Combine(_folder.FullName, "fresh.json"));
        const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        // Neither the umask's mode nor one the umask could give: a mode that only a kept one explains.
        const UnixFileMode Kept = Private | UnixFileMode.OtherExecute;
        foreach (var path in new[] { library, cli })
        {
            File.WriteAllText(path, "old");
            File.SetUnixFileMode(path, Kept);
        }

        RoutingStatsFile.Save(stats, library);
        MoeGpuStats.Cli.Output.OutputPath.WriteAtomically(cli, stream => JsonSerializer.Serialize(stream, stats));
        RoutingStatsFile.Save(stats, fresh);

        Assert.Equal(Kept, File.GetUnixFileMode(library));
        Assert.Equal(Kept, File.GetUnixFileMode(cli));
        File.WriteAllText(Path.Combine(_folder.FullName, "umask.txt"), "");
        Assert.Equal(File.GetUnixFileMode(Path.Combine(_folder.FullName, "umask.txt")), File.GetUnixFileMode(fresh));
        Assert.Equal(JsonSerializer.Serialize(stats), File.ReadAllText(cli));
    }

    /// <summary>
    /// A saved model reads back with its summary, window load and layers, and saved ranks merge as the
    /// live ranks do: what a server that cannot run the CLI hands to <c>moegs merge</c>.
    /// </summary>
    [Fact]
    public void SavedModelsReadBackAndMergeAsTheLiveModels()
    {
        var options = new ModelRoutingStatsOptions { Layers = 3, Experts = 8, Window = 4, ExpertCapacity = 3 };
        using var rank0 = new ModelRoutingStats(options);
        using var rank1 = new ModelRoutingStats(options);
        foreach (var (rank, seed) in new[] { (rank0, 1), (rank1, 2) })
        {
            foreach (var step in ModelSteps.Random(options.Layers, options.Experts, 2, 6, seed))
            {
                rank.RecordStep(step.Ids, step.Valid, step.TopK, step.Stride);
            }
        }

        var (path0, path1) = (Path.Combine(_folder.FullName, "rank0.json"), Path.Combine(_folder.FullName, "rank1.json"));
        RoutingStatsFile.Save(rank0, path0);
        RoutingStatsFile.Save(rank1, path1);

        using var read0 = RoutingStatsFile.LoadModel(path0);
        using var read1 = JsonSerializer.Deserialize<ModelRoutingStats>(File.ReadAllText(path1))!;
        Assert.Equal(rank0.Summary(), read0.Summary());
        Assert.Equal(rank0.WindowLoad(), read0.WindowLoad());
        Assert.Equal(JsonSerializer.Serialize(rank0), JsonSerializer.Serialize(read0));
        using var merged = ModelRoutingStats.Merge([read0, read1]);
        using var live = ModelRoutingStats.Merge([rank0, rank1]);
        Assert.Equal(live.Summary(), merged.Summary());
        Assert.Equal(live.WindowLoad(), merged.WindowLoad());
        Assert.Equal(["rank0.json", "rank1.json"], _folder.GetFiles().Select(f => f.Name).Order());
    }

    /// <summary>A model that cannot be written leaves the target as it was and no temporary file.</summary>
    /// <summary>Each reader refuses the other kind of snapshot by name, and says which reads it.</summary>
    [Fact]
    public void ASnapshotOfTheOtherKindNamesTheReaderThatReadsIt()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
        model.RecordStep([0, 1, 2, 3], tokens: 2, topK: 1);
        using var layer = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        layer.RecordRouting([0, 1], tokens: 2, topK: 1);
        var (modelPath, layerPath) = (Path.Combine(_folder.FullName, "model.json"), Path.Combine(_folder.FullName, "layer.json"));
        RoutingStatsFile.Save(model, modelPath);
        RoutingStatsFile.Save(layer, layerPath);

        Assert.Equal(
            $"{modelPath}: a model's snapshot (of 2 layers), not one layer's; read it with RoutingStatsFile.LoadModel.",
            Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(modelPath)).Message);
        Assert.Equal(
            $"{layerPath}: one layer's snapshot, not a model's; read it with RoutingStatsFile.Load.",
            Assert.Throws<InvalidDataException>(() => RoutingStatsFile.LoadModel(layerPath)).Message);
        using var read = RoutingStatsFile.LoadModel(modelPath);
        Assert.Equal(JsonSerializer.Serialize(model), JsonSerializer.Serialize(read));

        // What is neither is refused by the reader asked, in its own words, not sent to the other.
        var array = Path.Combine(_folder.FullName, "array.json");
        File.WriteAllText(array, "[[1, 2]]");
        Assert.Equal(
            $"{array}: not a model's routing statistics snapshot (Model routing statistics must be a JSON object, not an array.)",
            Assert.Throws<InvalidDataException>(() => RoutingStatsFile.LoadModel(array)).Message);
        Assert.StartsWith($"{array}: not a routing statistics snapshot (", Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(array)).Message);
    }

    /// <summary>
    /// A save is a file renamed over the name, which would put a file where a pipe or a device was (as root, /dev/null
    /// itself): a pipe, a link to one and a name in /dev, /proc or /sys are refused, with the target left as it was, for a
    /// layer and a model alike; a link to a file is replaced by the file, its target left alone.
    /// </summary>
    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void ASaveOverAPipeADeviceOrASystemNameIsRefused()
    {
        using var stats = new RoutingStats();
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
        var fifo = Path.Combine(_folder.FullName, "fifo.json");
        Assert.Equal(0, Mono.Unix.Native.Syscall.mkfifo(fifo, Mono.Unix.Native.FilePermissions.DEFFILEMODE));
        var toFifo = Path.Combine(_folder.FullName, "to-fifo.json");
        File.CreateSymbolicLink(toFifo, fifo);
        var inSys = "/sys/moegs-test.json";
        foreach (var save in new Action<string>[] { path => RoutingStatsFile.Save(stats, path), path => RoutingStatsFile.Save(model, path) })
        {
            Assert.Equal($"{fifo} is a named pipe, not a file: the write would replace it with a file; give the path of a file to write.", Assert.Throws<IOException>(() => save(fifo)).Message);
            Assert.Equal($"{toFifo} is a link to a named pipe, not a file: the write would replace it with a file; give the path of a file to write.", Assert.Throws<IOException>(() => save(toFifo)).Message);
            Assert.Equal($"{inSys} is in /sys, the system's own names (the kernel's objects), not a file a write may replace; give the path of a file to write.", Assert.Throws<IOException>(() => save(inSys)).Message);
            Assert.Equal($"{fifo} is not a folder (a file, a pipe or a device); give a path in a folder.", Assert.Throws<DirectoryNotFoundException>(() => save(Path.Combine(fifo, "x.json"))).Message);
            Assert.Equal(FileTypes.Fifo, UnixFileSystemInfo.GetFileSystemEntry(fifo).FileType);
            Assert.Equal(FileTypes.SymbolicLink, UnixFileSystemInfo.GetFileSystemEntry(toFifo).FileType);
        }

        var target = Path.Combine(_folder.FullName, "target.json");
        File.WriteAllText(target, "before");
        var link = Path.Combine(_folder.FullName, "link.json");
        File.CreateSymbolicLink(link, target);
        RoutingStatsFile.Save(model, link);
        Assert.Equal(("before", FileTypes.RegularFile), (File.ReadAllText(target), UnixFileSystemInfo.GetFileSystemEntry(link).FileType));
        using var saved = RoutingStatsFile.LoadModel(link);
        Assert.Equal(2, saved.Layers);
    }

    [Fact]
    public void AModelThatCannotBeWrittenLeavesTheTargetAsItWas()
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4 });
        var missing = Path.Combine(_folder.FullName, "no-such-folder", "run.json");
        // Named as the caller gave it: the temporary the save writes first is no file of theirs.
        Assert.Equal($"the folder {Path.GetDirectoryName(missing)} does not exist, or may not be searched; create it, or give a path in an existing folder.", Assert.Throws<DirectoryNotFoundException>(() => RoutingStatsFile.Save(model, missing)).Message);
        var aFolder = _folder.CreateSubdirectory("run.json").FullName;
        Assert.Equal($"{aFolder} is a folder; give the path of a file to write.", Assert.Throws<IOException>(() => RoutingStatsFile.Save(model, aFolder)).Message);
        Directory.Delete(aFolder);
        var aFile = Path.Combine(_folder.FullName, "not-a-folder");
        File.WriteAllText(aFile, "");
        Assert.Equal($"{aFile} is not a folder (a file, a pipe or a device); give a path in a folder.", Assert.Throws<DirectoryNotFoundException>(() => RoutingStatsFile.Save(model, Path.Combine(aFile, "run.json"))).Message);
        File.Delete(aFile);
        Assert.Throws<ArgumentException>(() => RoutingStatsFile.Save(model, ""));
        model.Dispose();
        var target = Path.Combine(_folder.FullName, "run.json");
        File.WriteAllText(target, "before");
        Assert.Throws<ObjectDisposedException>(() => RoutingStatsFile.Save(model, target));
        Assert.Equal("before", File.ReadAllText(target));
        Assert.Equal(["run.json"], _folder.GetFiles().Select(f => f.Name));
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

    /// <summary>A folder is named as such, not with .NET's "Access to the path is denied", which is not a documented exception and sends users to its permissions.</summary>
    [Fact]
    public void AFolderIsRefusedAsNotASnapshotFile()
    {
        var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(_folder.FullName));
        Assert.Equal($"{_folder.FullName}: a folder, not a routing statistics snapshot file; give the file that Save wrote.", error.Message);
    }

    /// <summary>
    /// A file past 2 GiB threw the parser's OverflowException, undocumented and naming nothing; one past
    /// the limit is refused by its length before a byte is read. The file is sparse: it takes no disk.
    /// </summary>
    [Fact]
    public void AFileLargerThanTheLimitIsRefusedByItsLength()
    {
        var path = Path.Combine(_folder.FullName, "huge.json");
        using (var file = new FileStream(path, FileMode.CreateNew))
        {
            file.SetLength(3L << 30);
        }

        var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(path));
        Assert.Equal($"{path}: 3,221,225,472 bytes; a routing statistics snapshot file is at most 1,073,741,824 bytes (the largest the library writes is under 600 MB).", error.Message);
    }

    /// <summary>
    /// A file of more JSON values than any snapshot holds is refused before it is parsed: a document of it keeps
    /// 12 bytes a value (a 128 MB file of zeros took 2.8 GB), past the 1 GiB file limit's worth.
    /// </summary>
    [Fact]
    public void AFileOfMoreValuesThanAnySnapshotIsRefusedBeforeItIsParsed()
    {
        var path = WriteZeros(Path.Combine(_folder.FullName, "zeros.json"), RoutingStatsFile.MaxJsonTokens);

        var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(path));

        Assert.Equal(RoutingStatsFile.TooManyTokens(path), error.Message);
        Assert.StartsWith($"{path}: more than 33,554,432 JSON tokens (values, field names and the ends of objects and arrays); ", error.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Variances and latencies past the 1,000 the seed keeps are refused before they are read (a file of 5
    /// million allocated 400 MB before it was judged), naming the field.
    /// </summary>
    [Theory]
    [InlineData("load_variance_history")]
    [InlineData("recent_latencies")]
    public void MoreVariancesOrLatenciesThanTheSeedKeepsAreRefused(string field)
    {
        using var stats = new RoutingStats();
        Decisions.Feed(stats, new Random(6), 1_200);
        var path = Path.Combine(_folder.FullName, "long.json");
        RoutingStatsFile.Save(stats, path);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!;
        var parent = field == "recent_latencies" ? json["routing_latency_stats"]! : json;
        parent[field] = new System.Text.Json.Nodes.JsonArray([.. Enumerable.Repeat(1.0, 1_001).Select(value => (System.Text.Json.Nodes.JsonNode?)value)]);
        File.WriteAllText(path, json.ToJsonString());

        var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(path));

        Assert.Contains($"{field} holds 1,001 entries; the seed keeps the newest 1,000", error.Message, StringComparison.Ordinal);
    }

    /// <summary>A snapshot an editor saved with a UTF-8 byte order mark reads as the one without.</summary>
    [Fact]
    public void ASnapshotWithAByteOrderMarkLoads()
    {
        using var stats = new RoutingStats();
        Decisions.Feed(stats, new Random(8), 20);
        var path = Path.Combine(_folder.FullName, "bom.json");
        RoutingStatsFile.Save(stats, path);
        File.WriteAllBytes(path, [0xEF, 0xBB, 0xBF, .. File.ReadAllBytes(path)]);

        using var loaded = RoutingStatsFile.Load(path);

        Assert.Equal(stats.ExpertTokenCounts, loaded.ExpertTokenCounts);
        Assert.Equal(stats.TotalRoutings, loaded.TotalRoutings);
    }

    /// <summary>
    /// A snapshot with bytes that are not UTF-8 (here in a field name, which the parser leaves unchecked) is refused
    /// as such by both readers: it was "the JSON value could not be converted to MoeGpuStats.RoutingStats".
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ASnapshotThatIsNotUtf8IsRefusedAsSuch(bool model)
    {
        var path = Path.Combine(_folder.FullName, "latin1.json");
        File.WriteAllBytes(path, [.. "{\"total_routings\": 0, \""u8, 0xE9, .. "\": 1}"u8]);

        var error = Assert.Throws<InvalidDataException>(() => (model ? RoutingStatsFile.LoadModel(path) : (IDisposable)RoutingStatsFile.Load(path)).Dispose());

        Assert.Equal($"{path}: not UTF-8 text; a routing statistics snapshot is UTF-8 JSON.", error.Message);
    }

    /// <summary>A gzip-compressed snapshot, as snapshots are often kept, is named as such, with what to do.</summary>
    [Fact]
    public void AGzippedSnapshotIsNamedAsCompressed()
    {
        using var stats = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        var path = Path.Combine(_folder.FullName, "run.json.gz");
        using (var file = File.Create(path))
        using (var gzip = new System.IO.Compression.GZipStream(file, System.IO.Compression.CompressionLevel.Fastest))
        {
            System.Text.Json.JsonSerializer.Serialize(gzip, stats);
        }

        var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(path).Dispose());
        Assert.Equal($"{path}: not UTF-8 text (it is gzip-compressed: decompress it first); a routing statistics snapshot is UTF-8 JSON.", error.Message);
    }

    /// <summary>
    /// A snapshot handed to <c>JsonSerializer</c> (one received from another rank) is bounded as a file is: more
    /// tokens than any snapshot holds are refused before a document of them is built, a layer's or a model's.
    /// </summary>
    [Fact]
    public void JsonSerializerRefusesMoreValuesThanAnySnapshot()
    {
        var path = WriteZeros(Path.Combine(_folder.FullName, "zeros.json"), RoutingStatsFile.MaxJsonTokens);
        const string Expected = "The snapshot holds more than 33,554,432 JSON tokens";

        using (var stream = File.OpenRead(path))
        {
            Assert.StartsWith(Expected, Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(stream)).Message, StringComparison.Ordinal);
        }

        using (var stream = File.OpenRead(path))
        {
            Assert.StartsWith(Expected, Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(stream)).Message, StringComparison.Ordinal);
        }
    }

    /// <summary>Writes <c>{"expert_token_counts": [0, 0, …]}</c> with <paramref name="zeros"/> zeros: that many values and 4 tokens more.</summary>
    internal static string WriteZeros(string path, long zeros)
    {
        using var file = new BufferedStream(File.Create(path), 1 << 20);
        file.Write("{\"expert_token_counts\": [0"u8);
        for (var i = 1L; i < zeros; i++)
        {
            file.Write(",0"u8);
        }

        file.Write("]}"u8);
        return path;
    }

    /// <summary>A file of /proc is refused as the system's own name before a temporary is tried beside it.</summary>
    [Fact]
    public void AFileOfProcIsRefusedAsTheSystemsOwn()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && File.Exists("/proc/version"), "needs Linux's /proc");
        using var stats = new RoutingStats();

        var error = Assert.Throws<IOException>(() => RoutingStatsFile.Save(stats, "/proc/version"));

        Assert.Equal("/proc/version is in /proc, the system's own names (processes, the kernel's settings), not a file a write may replace; give the path of a file to write.", error.Message);
    }

    /// <summary>
    /// A proc file system mounted where <see cref="OutputTarget"/> does not look (a host's /proc at /host/proc in a
    /// container) refuses a new name with ENOENT, which .NET reports as the file not found: the save says the folder
    /// lets no file be created. One is mounted where the tests may mount (root with CAP_SYS_ADMIN, as in CI).
    /// </summary>
    [Fact]
    public void AFolderThatLetsNoFileBeCreatedIsNamed()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux() && Support.ExternalProgram.FindOnPath("mount") is not null, "needs Linux's mount");
        var point = _folder.CreateSubdirectory("proc").FullName;
        Support.ExternalProgram.Run("mount", $"-t proc proc \"{point}\"", out var mounted);
        Assert.SkipWhen(mounted != 0, "mounting a proc file system needs root and the right to mount (CAP_SYS_ADMIN)");
        try
        {
            using var stats = new RoutingStats();
            var path = Path.Combine(point, "s.json");

            var error = Assert.Throws<IOException>(() => RoutingStatsFile.Save(stats, path));

            Assert.Equal($"{path}: its folder {point} lets no file be created in it (as /proc and /sys do not); give a path elsewhere.", error.Message);
        }
        finally
        {
            Support.ExternalProgram.Run("umount", $"\"{point}\"", out _);
        }
    }

    [Fact]
    public void ATruncatedSnapshotGivesAnErrorNamingTheFile()
    {
        using var stats = new RoutingStats();
        Decisions.Feed(stats, new Random(4), 50);
        var path = Path.Combine(_folder.FullName, "cut.json");
        RoutingStatsFile.Save(stats, path);
        var text = File.ReadAllText(path);
        File.WriteAllText(path, text[..(text.Length / 2)]);

        var error = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(path));
        Assert.Contains(path, error.Message);
    }
}
