using System.IO.Compression;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary>
/// Traces opened by <see cref="TraceFile"/> that are not what they claim. Mutations of the committed
/// .npz and JSON-lines traces (a fixed seed, a few seconds at most): the reader either refuses a trace
/// in one line or reads every step of it, and opening it never allocates more than a bounded multiple
/// of what the file holds, whatever its sizes claim. A member whose bytes changed is refused by its CRC-32.
/// </summary>
public sealed class TraceFileTests : IDisposable
{
    /// <summary>Mutants tried per trace, the same ones on every machine (a time budget tried fewer on a slow one).</summary>
    private const int Mutants = 150;

    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-trace-fuzz-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>
    /// JSON lines are read whole before the replay (their passes indexed), and the caller is told so with the size
    /// from which that is a long read; a .npy or .npz file is not read whole to open. The note names the file and its size.
    /// </summary>
    [Fact]
    public void AWholeReadBeforeTheReplayIsToldAndNamed()
    {
        var told = new List<(long Bytes, string Why)>();
        using (TraceFile.Open(Path.Combine(AppContext.BaseDirectory, "cli-traces", "passes_step.jsonl"), null, null, (bytes, why) => told.Add((bytes, why))))
        using (TraceFile.Open(Path.Combine(AppContext.BaseDirectory, "cli-traces", "passes.npz"), IdLayout.Parse("tokens,layers,k"), null, (bytes, why) => told.Add((bytes, why))))
        {
            Assert.Equal([(128L << 20, "to find its forward passes, before the replay starts")], told);
        }

        var file = new FileInfo(Path.Combine(AppContext.BaseDirectory, "cli-traces", "passes_step.jsonl"));
        using var error = new StringWriter();
        var note = InputFile.LongReadNote(new MoeGpuStats.Cli.CliConsole(TextWriter.Null, error, ErrorIsTerminal: false), file);
        note(file.Length + 1, "to find its forward passes, before the replay starts");
        Assert.Empty(error.ToString());
        note(file.Length, "to find its forward passes, before the replay starts");
        Assert.Matches(@"^note: reading passes_step\.jsonl \([0-9]+(\.[0-9])? KB\) whole to find its forward passes, before the replay starts\.$", error.ToString().Trim());
    }

    /// <summary>
    /// A .npy file or an .npz archive read whole for its largest id gets its note by the ids it holds, counted from its
    /// shape (a compressed archive's size says nothing of them); JSON lines, read whole when opened, get none here.
    /// </summary>
    [Fact]
    public void TheLargestIdNoteCountsTheIdsAnArchiveHolds()
    {
        var archive = new FileInfo(Path.Combine(AppContext.BaseDirectory, "cli-traces", "passes_compressed.npz"));
        using var trace = TraceFile.Open(archive.FullName, IdLayout.Parse("layers,tokens,k"), null);
        var ids = Enumerable.Range(0, trace.Steps).Sum(step => (long)trace.Layers * trace.TokensAt(step) * trace.TopK);
        using var lines = TraceFile.Open(Path.Combine(AppContext.BaseDirectory, "cli-traces", "passes_step.jsonl"), null, null);

        Assert.Null(MoeGpuStats.Cli.Commands.ReplayCommand.LargestIdNote(trace, archive, ids + 1));
        Assert.Equal(
            $"note: reading passes_compressed.npz ({ids:N0} ids) whole for its largest id (--experts skips this), before the replay starts.",
            MoeGpuStats.Cli.Commands.ReplayCommand.LargestIdNote(trace, archive, ids));
        Assert.Null(MoeGpuStats.Cli.Commands.ReplayCommand.LargestIdNote(lines, archive, 0));
    }

    /// <summary>
    /// An archive whose end record lists more members than replay reads, or a larger directory, is refused from that
    /// record, before the archive reader builds an object a member (4,500,000 members listed took 1.6 GB and 9 s to be
    /// refused). Here the end record is all the file holds: nothing else is read. The zip64 record counts wherever the
    /// archive reader takes it: where any one field of the end record (at byte <c>marked</c>) is marked as held there,
    /// the directory's offset alone, say, while the end record's own counts are small.
    /// </summary>
    [Theory]
    [InlineData(NpzIds.MaxMembers + 1L, 1_000L, false, "the archive's directory lists 262,145 members; replay reads at most 262,144 (save the trace in fewer, larger arrays).")]
    [InlineData(1_025L, 60_000L, true, "1,025 members, one per layer (--members layers); a model holds at most 1,024 layers.")]
    [InlineData(10L, (64L << 20) + 1, false, "the archive's directory takes 67,108,865 bytes; replay reads one of at most 67,108,864 (its members' names and fields).")]
    [InlineData(NpzIds.MaxMembers + 1L, 1_000L, false, "the archive's directory lists 262,145 members; replay reads at most 262,144 (save the trace in fewer, larger arrays).", 4)]
    [InlineData(NpzIds.MaxMembers + 1L, 1_000L, false, "the archive's directory lists 262,145 members; replay reads at most 262,144 (save the trace in fewer, larger arrays).", 6)]
    [InlineData(NpzIds.MaxMembers + 1L, 1_000L, false, "the archive's directory lists 262,145 members; replay reads at most 262,144 (save the trace in fewer, larger arrays).", 8)]
    [InlineData(NpzIds.MaxMembers + 1L, 1_000L, false, "the archive's directory lists 262,145 members; replay reads at most 262,144 (save the trace in fewer, larger arrays).", 10)]
    [InlineData(10L, (64L << 20) + 1, false, "the archive's directory takes 67,108,865 bytes; replay reads one of at most 67,108,864 (its members' names and fields).", 12)]
    [InlineData(NpzIds.MaxMembers + 1L, 1_000L, false, "the archive's directory lists 262,145 members; replay reads at most 262,144 (save the trace in fewer, larger arrays).", 16)]
    public void ADirectoryListingMoreThanReplayReadsIsRefusedFromItsEndRecord(long members, long bytes, bool layerMembers, string expected, int marked = -1)
    {
        var archive = Path.Combine(_folder.FullName, "listed.npz");
        File.WriteAllBytes(archive, EndRecords((ulong)members, (ulong)bytes, marked));

        var before = GC.GetAllocatedBytesForCurrentThread();
        var refusal = Assert.Throws<InvalidDataException>(() => TraceFile.Open(archive, null, layerMembers ? NpzMembers.Layers : null).Dispose());
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal($"{archive}: {expected}", refusal.Message);
        Assert.True(allocated < 1 << 20, $"{allocated:N0} bytes allocated");
    }

    /// <summary>
    /// The end record counted is the one the archive reader takes: a byte appended after it leaves the count in place
    /// (it was skipped, and 1,000,000 members were listed before their count refused them), and an archive whose
    /// comment holds a second end record, of other members, is refused where it replayed one member of two.
    /// </summary>
    [Fact]
    public void TheEndRecordCountedIsTheOneTheArchiveReaderTakes()
    {
        var listed = Path.Combine(_folder.FullName, "appended.npz");
        File.WriteAllBytes(listed, [.. EndRecords(NpzIds.MaxMembers + 1UL, 1_000), .. "\n"u8]);
        var refusal = Assert.Throws<InvalidDataException>(() => TraceFile.Open(listed, null, null).Dispose());
        Assert.Equal($"{listed}: the archive's directory lists 262,145 members; replay reads at most 262,144 (save the trace in fewer, larger arrays).", refusal.Message);

        var passes = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "cli-traces", "passes.npz"));
        var appended = Path.Combine(_folder.FullName, "passes.npz");
        File.WriteAllBytes(appended, [.. passes, .. "\n"u8]);
        using (var trace = TraceFile.Open(appended, IdLayout.Parse("tokens,layers,k"), null))
        {
            Assert.Equal(4, trace.Steps);
        }

        // A second end record listing the last member alone, in the first's comment, after a byte of its own.
        var end = passes.AsSpan().LastIndexOf("PK\u0005\u0006"u8);
        var last = passes.AsSpan().LastIndexOf("PK\u0001\u0002"u8);
        var second = passes[end..];
        BitConverter.GetBytes((ushort)1).CopyTo(second, 8);
        BitConverter.GetBytes((ushort)1).CopyTo(second, 10);
        BitConverter.GetBytes((uint)(end - last)).CopyTo(second, 12);
        BitConverter.GetBytes((uint)last).CopyTo(second, 16);
        var first = passes[end..];
        BitConverter.GetBytes((ushort)(1 + second.Length)).CopyTo(first, 20);
        var commented = Path.Combine(_folder.FullName, "commented.npz");
        File.WriteAllBytes(commented, [.. passes[..end], .. first, .. "X"u8, .. second]);
        refusal = Assert.Throws<InvalidDataException>(() => TraceFile.Open(commented, IdLayout.Parse("tokens,layers,k"), null).Dispose());
        Assert.Equal(
            $"{commented}: its end-of-directory record (at byte {end:N0}) holds another end-of-directory signature (at byte {end + 23:N0}), which the archive reader takes for the archive's end: readers differ on what the archive holds. np.savez writes no comment: save the archive again.",
            refusal.Message);
    }

    /// <summary>
    /// A member of a rank no layout reads is refused naming the layouts it could have: with <c>--members layers</c> the
    /// two of one layer (the six of a trace, four with a layers axis, were listed), without it all six.
    /// </summary>
    [Theory]
    [InlineData("4", true, "shape (4,) has 1 dimension; with --members layers a member is one layer's [steps,tokens,k] or [tokens,k].")]
    [InlineData("1, 1, 1, 1, 4", true, "shape (1, 1, 1, 1, 4) has 5 dimensions; with --members layers a member is one layer's [steps,tokens,k] or [tokens,k].")]
    [InlineData("4", false, "shape (4,) has 1 dimension; replay reads 2 to 4: [steps,layers,tokens,k], [steps,tokens,layers,k], [layers,tokens,k], [tokens,layers,k], [steps,tokens,k], [tokens,k].")]
    public void AMemberOfARankNoLayoutReadsNamesTheLayoutsItCouldHave(string shape, bool layerMembers, string message)
    {
        var path = Path.Combine(_folder.FullName, "ranks.npz");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            for (var m = 0; m < 2; m++)
            {
                using var member = zip.CreateEntry($"layer_{m}.npy").Open();
                member.Write(MoeGpuStats.Tests.Support.NpyFile.Bytes("<i4", shape, [.. new[] { 0, 1, 2, 3 }.SelectMany(BitConverter.GetBytes)]));
            }
        }

        var refusal = Assert.Throws<InvalidDataException>(() => TraceFile.Open(path, null, layerMembers ? NpzMembers.Layers : null).Dispose());
        Assert.Equal($"{path}[layer_0]: {message}", refusal.Message);
    }

    /// <summary>
    /// Sizes the archive's directory claims that only a reader of the whole could take are refused from their sums:
    /// 1,024 layers of 2^21 ids (2^31 ids a step, one past what one record takes) and two members of 2^30 steps (2^31
    /// steps, one past what replay counts). Each member's directory entry claims its size; its bytes are a header
    /// and enough random bytes for deflate to have made it, never read.
    /// </summary>
    [Fact]
    public void SumsOfClaimedSizesPastWhatReplayReadsAreRefusedAtOpen()
    {
        var layers = Path.Combine(_folder.FullName, "layers.npz");
        WriteClaimingArchive(layers, ModelRoutingStatsOptions.MaxLayers, "|i1", "1048576, 2", 1L << 21);
        var refusal = Assert.Throws<InvalidDataException>(() => TraceFile.Open(layers, null, NpzMembers.Layers).Dispose());
        Assert.Equal($"{layers}: 1,024 layers of 1,048,576 tokens x 2 ids: 2,147,483,648 ids per step; replay reads at most 2,147,483,647.", refusal.Message);

        var steps = Path.Combine(_folder.FullName, "steps.npz");
        WriteClaimingArchive(steps, 2, "|i1", "1073741824, 1, 1", 1L << 30);
        refusal = Assert.Throws<InvalidDataException>(() => TraceFile.Open(steps, IdLayout.Parse("steps,tokens,k"), null).Dispose());
        Assert.Equal($"{steps}: more than 2,147,483,647 steps in all; replay reads at most that many.", refusal.Message);
    }

    /// <summary>
    /// Writes <paramref name="members"/> deflated members whose directory entries claim <paramref name="data"/> bytes
    /// after a <paramref name="descr"/> header of <paramref name="shape"/>: the header and a thousandth of that in random
    /// bytes (deflate makes at most about 1,032 bytes of one), never read.
    /// </summary>
    private static void WriteClaimingArchive(string path, int members, string descr, string shape, long data)
    {
        var header = MoeGpuStats.Tests.Support.NpyFile.Bytes(descr, shape, []);
        var random = new Random(7);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            for (var m = 0; m < members; m++)
            {
                var filler = new byte[data / 1_000];
                random.NextBytes(filler);
                using var member = zip.CreateEntry($"arr_{m}.npy", CompressionLevel.Fastest).Open();
                member.Write(header);
                member.Write(filler);
            }
        }

        var bytes = File.ReadAllBytes(path);
        for (var (entry, m) = (bytes.AsSpan().IndexOf("PK\u0001\u0002"u8), 0); m < members; m++)
        {
            BitConverter.GetBytes((uint)(header.Length + data)).CopyTo(bytes, entry + 24);
            entry += 46 + BitConverter.ToUInt16(bytes, entry + 28) + BitConverter.ToUInt16(bytes, entry + 30) + BitConverter.ToUInt16(bytes, entry + 32);
        }

        File.WriteAllBytes(path, bytes);
    }

    /// <summary>
    /// A zip64 end record, its locator and the end record that points to them, listing <paramref name="members"/>
    /// members in <paramref name="bytes"/> bytes. The end record marks its counts and offsets as held in the zip64
    /// record (all ones), or, where <paramref name="marked"/> is not -1, only its field at that byte, the others
    /// saying one member in 46 bytes on disk 0.
    /// </summary>
    private static byte[] EndRecords(ulong members, ulong bytes, int marked = -1)
    {
        var end = marked < 0 ? ZipRecords.End(ushort.MaxValue, uint.MaxValue, offset: uint.MaxValue) : ZipRecords.End(1, 46);
        if (marked >= 0)
        {
            end.AsSpan(marked, marked < 12 ? 2 : 4).Fill(0xff);
        }

        return [.. ZipRecords.Zip64Record(members, members, bytes), .. ZipRecords.Locator(0), .. end];
    }

    /// <summary>
    /// A member size the archive's directory claims that no .npy fits in: 0 bytes (below the preamble, which was
    /// read: "the file has -10 after the preamble"), or 2^64 − 1 in a zip64 field, which .NET reads as −1 and which
    /// passed every bound ("-11 after the preamble"). Each is named as what the archive claims.
    /// </summary>
    [Theory]
    [InlineData(0UL, "[ids]: truncated: 0 bytes, fewer than the .npy preamble's 10.")]
    [InlineData(ulong.MaxValue, "[ids]: the archive's directory claims 18,446,744,073,709,551,615 bytes from {0} compressed, more than any file holds: the archive is corrupt.")]
    public void AMemberSizeNoNpyFitsInIsNamedAsTheArchivesClaim(ulong claimed, string expected)
    {
        var (archive, _) = OneStoredMember();

        var (bytes, stored) = WithClaimedSize(File.ReadAllBytes(archive), claimed);
        File.WriteAllBytes(archive, bytes);

        var refusal = Assert.Throws<InvalidDataException>(() => TraceFile.Open(archive, IdLayout.Parse("layers,tokens,k"), null).Dispose());

        Assert.Equal(archive + string.Format(System.Globalization.CultureInfo.InvariantCulture, expected, stored), refusal.Message);
    }

    /// <summary>
    /// A compressed size the archive's directory claims that the archive cannot hold is named as the claim: past
    /// 2^63 − 1 (read negative), one byte past the archive, and a member size deflate could not make of it.
    /// </summary>
    [Fact]
    public void ACompressedSizeTheArchiveCannotHoldIsNamedAsTheArchivesClaim()
    {
        var (archive, member) = OneStoredMember();

        var original = File.ReadAllBytes(archive);
        var length = (ulong)member;
        foreach (var (claimed, compressed, expected) in new[]
        {
            (length, ulong.MaxValue, $"the archive's directory claims {length:N0} bytes from 18,446,744,073,709,551,615 compressed, more than any file holds: the archive is corrupt."),
            (length, (ulong)original.Length + 1, $"the archive's directory claims {original.Length + 1:N0} compressed bytes, the archive has {original.Length:N0}: it is truncated or corrupt."),
            ((length + 1) * 1_033, length, $"the archive's directory claims {(length + 1) * 1_033:N0} bytes from {length:N0} compressed, more than deflate makes: the archive is corrupt."),
        })
        {
            var (bytes, _) = WithClaimedSize([.. original], claimed, compressed);
            File.WriteAllBytes(archive, bytes);
            var refusal = Assert.Throws<InvalidDataException>(() => TraceFile.Open(archive, IdLayout.Parse("layers,tokens,k"), null).Dispose());
            Assert.Equal($"{archive}[ids]: {expected}", refusal.Message);
        }
    }

    /// <summary>An archive of one stored member, ids.npy of [1, 2, 2] int32 ids, whose claims a test edits: its path, and the member's length.</summary>
    private (string Archive, long Member) OneStoredMember()
    {
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "ids.npy"), "<i4", "1, 2, 2", [.. new[] { 0, 1, 2, 3 }.SelectMany(BitConverter.GetBytes)]);
        var archive = Path.Combine(_folder.FullName, "claims.npz");
        using (var zip = ZipFile.Open(archive, ZipArchiveMode.Create))
        {
            zip.CreateEntryFromFile(npy, "ids.npy", CompressionLevel.NoCompression);
        }

        return (archive, new FileInfo(npy).Length);
    }

    /// <summary>
    /// The one-member <paramref name="zip"/> with its central directory claiming <paramref name="claimed"/> bytes for
    /// the member, from <paramref name="compressed"/> (its stored size where null); a claim past 32 bits puts both in a
    /// zip64 extra field, as zip writes one. Also the member's stored size.
    /// </summary>
    private static (byte[] Zip, uint Stored) WithClaimedSize(byte[] zip, ulong claimed, ulong? compressed = null)
    {
        var entry = zip.AsSpan().IndexOf("PK\u0001\u0002"u8);
        var stored = BitConverter.ToUInt32(zip, entry + 20);
        var (nameLength, extraLength) = (BitConverter.ToUInt16(zip, entry + 28), BitConverter.ToUInt16(zip, entry + 30));
        var claimedCompressed = compressed ?? stored;
        if (claimed <= uint.MaxValue && claimedCompressed <= uint.MaxValue)
        {
            BitConverter.GetBytes((uint)claimedCompressed).CopyTo(zip, entry + 20);
            BitConverter.GetBytes((uint)claimed).CopyTo(zip, entry + 24);
            return (zip, stored);
        }

        var header = zip[entry..(entry + 46 + nameLength)];
        BitConverter.GetBytes(uint.MaxValue).CopyTo(header, 20);
        BitConverter.GetBytes(uint.MaxValue).CopyTo(header, 24);
        BitConverter.GetBytes((ushort)20).CopyTo(header, 30);
        byte[] zip64 = [.. BitConverter.GetBytes((ushort)1), .. BitConverter.GetBytes((ushort)16), .. BitConverter.GetBytes(claimed), .. BitConverter.GetBytes(claimedCompressed)];
        var end = zip[(entry + 46 + nameLength + extraLength)..];
        BitConverter.GetBytes((uint)(header.Length + zip64.Length)).CopyTo(end, end.AsSpan().IndexOf("PK\u0005\u0006"u8) + 12);
        return ([.. zip[..entry], .. header, .. zip64, .. end], stored);
    }

    [Theory]
    [InlineData("passes.npz", "tokens,layers,k", false)]
    [InlineData("passes_compressed.npz", "layers,tokens,k", false)]
    [InlineData("layers.npz", null, true)]
    [InlineData("passes_step.jsonl", null, false)]
    [InlineData("passes_lists.jsonl", null, false)]
    public void MutatedTracesAreReadOrRefusedWithinWhatTheyHold(string name, string? layoutName, bool layerMembers)
    {
        NpzMembers? members = layerMembers ? NpzMembers.Layers : null;
        var seed = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "cli-traces", name));
        var layout = layoutName is null ? null : IdLayout.Parse(layoutName);
        var random = new Random(name.Length);
        var path = Path.Combine(_folder.FullName, "mutant" + Path.GetExtension(name));
        int tries = 0, opened = 0;
        while (tries < Mutants)
        {
            var bytes = Mutate(seed, random);
            File.WriteAllBytes(path, bytes);
            tries++;
            var before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using var trace = TraceFile.Open(path, layout, members);
                trace.MaxId();
                var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                Assert.True(allocated <= (64L * bytes.Length) + (4 << 20), $"{name}: {allocated:N0} bytes allocated to open a trace of {bytes.Length:N0}");

                // A deflated member may hold up to about 1,032 bytes of one, and no more.
                var largest = (long)trace.Layers * trace.MaxTokens * trace.TopK;
                Assert.True(largest <= 1_033L * bytes.Length, $"{name}: a step of {largest:N0} ids from a file of {bytes.Length:N0} bytes");
                opened++;
                var step = new int[largest];
                for (var s = 0; s < trace.Steps; s++)
                {
                    Assert.Equal(trace.TokensAt(s), trace.ReadStep(s, step));
                }
            }
            catch (Exception exception) when (exception is InvalidDataException or IdLayoutException)
            {
                Assert.DoesNotContain('\n', exception.Message);
                Assert.StartsWith(path, exception.Message.Replace("--layout " + layoutName + ": ", "", StringComparison.Ordinal));
            }
        }

        Assert.True(opened > 0 && opened < tries, $"{opened} of {tries} mutants opened: the mutations should keep some files valid and break others");
    }

    private static byte[] Mutate(byte[] seed, Random random)
    {
        var bytes = (byte[])seed.Clone();
        switch (random.Next(4))
        {
            case 0:
                for (var i = random.Next(1, 4); i > 0; i--)
                {
                    bytes[random.Next(bytes.Length)] = (byte)random.Next(256);
                }

                return bytes;
            case 1:
                return bytes[..random.Next(bytes.Length)];
            case 2:
                // A size field (zip's 4- and 8-byte lengths, a .npy header's) that promises anything.
                var at = random.Next(bytes.Length - 8);
                var value = random.Next(3) switch { 0 => uint.MaxValue, 1 => (ulong)random.Next(), _ => ulong.MaxValue >> random.Next(64) };
                BitConverter.GetBytes(value).AsSpan(0, random.Next(2) == 0 ? 4 : 8).CopyTo(bytes.AsSpan(at));
                return bytes;
            default:
                // Digits changed: ids, layers, steps and positions in JSON; shapes in a stored member's header.
                var digits = Enumerable.Range(0, bytes.Length).Where(i => char.IsAsciiDigit((char)bytes[i])).ToArray();
                for (var i = random.Next(1, 4); i > 0 && digits.Length > 0; i--)
                {
                    bytes[digits[random.Next(digits.Length)]] = (byte)"0123456789-,]"[random.Next(13)];
                }

                return bytes;
        }
    }

    /// <summary>
    /// A byte flipped in a member's ids (a stored member's header and sizes stay valid) is refused by
    /// the member's CRC-32 once the member is read to its end, not replayed as another id.
    /// </summary>
    [Theory]
    [InlineData("passes.npz", "tokens,layers,k", false)]
    [InlineData("layers.npz", null, true)]
    public void AFlippedIdIsRefusedByTheMembersCrc(string name, string? layoutName, bool layerMembers)
    {
        var bytes = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "cli-traces", name));
        using (var archive = new ZipArchive(new MemoryStream(bytes), ZipArchiveMode.Read))
        {
            Assert.All(archive.Entries, entry => Assert.Equal(entry.Length, entry.CompressedLength));
        }

        var path = Path.Combine(_folder.FullName, name);
        var last = LastMemberDataByte(bytes);
        bytes[last] ^= 0x01;
        File.WriteAllBytes(path, bytes);
        var layout = layoutName is null ? null : IdLayout.Parse(layoutName);

        using var trace = TraceFile.Open(path, layout, layerMembers ? NpzMembers.Layers : null);
        var error = Assert.Throws<InvalidDataException>(() => trace.MaxId());
        Assert.Contains("CRC-32", error.Message);
        Assert.StartsWith(path + "[", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    /// <summary>A byte flipped near the end of a deflated member (past its header) is refused in one line that says the archive is corrupt, whatever .NET calls it.</summary>
    [Fact]
    public void ACorruptDeflatedMemberIsNamedAsCorrupt()
    {
        var bytes = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "cli-traces", "passes_compressed.npz"));
        bytes[LastMemberDataByte(bytes) - 3] ^= 0x55;
        var path = Path.Combine(_folder.FullName, "corrupt.npz");
        File.WriteAllBytes(path, bytes);

        var error = Assert.Throws<InvalidDataException>(() =>
        {
            using var trace = TraceFile.Open(path, IdLayout.Parse("layers,tokens,k"), null);
            trace.MaxId();
        });
        Assert.StartsWith($"{path}[", error.Message);
        Assert.Matches("the archive is corrupt|CRC-32", error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    /// <summary>
    /// A byte flipped anywhere in a deflated member's data, its header's bytes included (which then inflate to
    /// another header, or to none), is named as the corruption it is, never as a garbled or missing .npy header;
    /// a flip the inflated bytes do not show (a padding bit of the stream's last byte) changes nothing.
    /// </summary>
    [Fact]
    public void EveryFlippedByteOfADeflatedMemberIsNamedAsCorruption()
    {
        var original = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "cli-traces", "passes_compressed.npz"));
        var first = 30 + BitConverter.ToUInt16(original, 26) + BitConverter.ToUInt16(original, 28);
        var last = LastMemberDataByte(original);
        var path = Path.Combine(_folder.FullName, "flipped.npz");
        var named = 0;
        for (var at = first; at <= last; at++)
        {
            var bytes = (byte[])original.Clone();
            bytes[at] ^= 0x55;
            File.WriteAllBytes(path, bytes);
            try
            {
                using var trace = TraceFile.Open(path, IdLayout.Parse("layers,tokens,k"), null);
                trace.MaxId();
                Assert.True(FirstMember(bytes).SequenceEqual(FirstMember(original)), $"byte {at}: read without an error, but the member inflates to other bytes");
            }
            catch (InvalidDataException error)
            {
                named++;
                Assert.True(error.Message.StartsWith($"{path}[", StringComparison.Ordinal), $"byte {at}: {error.Message}");
                Assert.True(System.Text.RegularExpressions.Regex.IsMatch(error.Message, "the archive is corrupt|CRC-32|archive is truncated or corrupt"), $"byte {at}: {error.Message}");
                Assert.DoesNotContain('\n', error.Message);
            }
        }

        Assert.True(named >= last - first, $"{named} of {last - first + 1} flips named");
    }

    /// <summary>The first member of the archive in <paramref name="zip"/>, inflated; empty where it does not inflate.</summary>
    private static byte[] FirstMember(byte[] zip)
    {
        try
        {
            using var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read);
            using var stream = archive.Entries[0].Open();
            using var copy = new MemoryStream();
            stream.CopyTo(copy);
            return copy.ToArray();
        }
        catch (InvalidDataException)
        {
            return [];
        }
    }

    /// <summary>Members that share a name (np.load would read only the last) are all replayed, with a warning naming them.</summary>
    [Fact]
    public void MembersThatShareANameAreReplayedWithAWarning()
    {
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "step.npy"), "<i4", "2, 2", [.. new[] { 0, 1, 2, 3 }.SelectMany(BitConverter.GetBytes)]);
        var path = Path.Combine(_folder.FullName, "repeated.npz");
        using (var archive = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            archive.CreateEntryFromFile(npy, "arr_0.npy", CompressionLevel.NoCompression);
            archive.CreateEntryFromFile(npy, "arr_0.npy", CompressionLevel.NoCompression);
        }

        using var trace = TraceFile.Open(path, null, null);
        Assert.Equal(2, trace.Steps);
        Assert.Contains($"warning: {path}: 2 members are named arr_0; replay takes each of them in the archive's order, where np.load reads only the last.", trace.Notes);
    }

    /// <summary>
    /// A member whose header claims fewer ids than its bytes hold (a shape edited smaller) is refused
    /// when the archive is opened: otherwise the member would never be read to its end, its CRC-32
    /// never checked, and part of its data replayed as the whole.
    /// </summary>
    [Fact]
    public void AMemberWithBytesBeyondItsShapeIsRefused()
    {
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "step.npy"), "<i4", "2, 2", [.. new[] { 0, 1, 2, 3, 4, 5 }.SelectMany(BitConverter.GetBytes)]);
        var path = Path.Combine(_folder.FullName, "edited.npz");
        using (var archive = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            archive.CreateEntryFromFile(npy, "arr_0.npy", CompressionLevel.NoCompression);
        }

        var error = Assert.Throws<InvalidDataException>(() => TraceFile.Open(path, null, null));
        Assert.Equal($"{path}[arr_0]: shape (2, 2) takes 144 bytes with its header, and 152 are there: the header or the data is corrupt (np.save writes nothing after the array).", error.Message);
    }

    /// <summary>
    /// A directory that points several names at one member's data (a 59 KB file unpacked to 1 Gi ids) is refused
    /// when the members' compressed sizes together pass the archive's length: each member alone is within bounds.
    /// </summary>
    [Fact]
    public void MembersWhoseDataOverlapAreRefused()
    {
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "step.npy"), "<i4", "2, 2", [.. new[] { 0, 1, 2, 3 }.SelectMany(BitConverter.GetBytes)]);
        byte[] zip;
        using (var memory = new MemoryStream())
        {
            using (var archive = new ZipArchive(memory, ZipArchiveMode.Create, leaveOpen: true))
            {
                archive.CreateEntryFromFile(npy, "arr_0.npy", CompressionLevel.NoCompression);
            }

            zip = memory.ToArray();
        }

        // Three central-directory records of the one member, and the end record counting them.
        const int Copies = 3;
        var central = zip.AsSpan().IndexOf("PK\u0001\u0002"u8);
        var end = zip.AsSpan().IndexOf("PK\u0005\u0006"u8);
        var record = zip[central..end];
        byte[] forged = [.. zip[..end], .. Enumerable.Repeat(record, Copies - 1).SelectMany(bytes => bytes), .. zip[end..]];
        var endRecord = forged.AsSpan(end + ((Copies - 1) * record.Length));
        BitConverter.TryWriteBytes(endRecord[8..], (ushort)Copies);
        BitConverter.TryWriteBytes(endRecord[10..], (ushort)Copies);
        BitConverter.TryWriteBytes(endRecord[12..], (uint)(Copies * record.Length));
        var path = Path.Combine(_folder.FullName, "overlapping.npz");
        File.WriteAllBytes(path, forged);

        var compressed = new FileInfo(npy).Length;
        var first = (int)(forged.Length / compressed) + 1;
        Assert.True(first <= Copies, $"{Copies} copies of {compressed} bytes do not pass an archive of {forged.Length}");
        var error = Assert.Throws<InvalidDataException>(() => TraceFile.Open(path, null, null));
        Assert.Equal($"{path}: its first {first} members claim {first * compressed:N0} compressed bytes, more than the archive's {forged.Length:N0}: their data overlap, and the archive is corrupt.", error.Message);
    }

    /// <summary>A deflated member's stream goes forward only: a step before the last read opens the member again, and reads its own ids.</summary>
    [Fact]
    public void AStepBeforeTheLastReadOfADeflatedMemberIsReadAgainFromItsStart()
    {
        int[] ids = [.. Enumerable.Range(0, 12)];
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "steps.npy"), "<i4", "3, 2, 2", [.. ids.SelectMany(BitConverter.GetBytes)]);
        var path = Path.Combine(_folder.FullName, "steps.npz");
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            zip.CreateEntryFromFile(npy, "arr_0.npy", CompressionLevel.Optimal);
        }

        using var trace = TraceFile.Open(path, IdLayout.StepsTokensK, null);
        var step = new int[4];
        foreach (var s in new[] { 2, 0, 1, 1, 0 })
        {
            trace.ReadStep(s, step);
            Assert.Equal(ids[(4 * s)..(4 * (s + 1))], step);
        }
    }

    /// <summary>A password-protected member is named as encrypted (it was called corrupt, by its CRC-32 or its method).</summary>
    [Fact]
    public void AnEncryptedMemberIsNamedSo()
    {
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "step.npy"), "<i4", "2, 2", [.. new[] { 0, 1, 2, 3 }.SelectMany(BitConverter.GetBytes)]);
        var path = Path.Combine(_folder.FullName, "locked.npz");
        using (var archive = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            archive.CreateEntryFromFile(npy, "arr_0.npy", CompressionLevel.NoCompression);
        }

        // The "encrypted" flag, bit 0 of the general-purpose flags, in the local and the central header.
        var zip = File.ReadAllBytes(path);
        zip[6] |= 1;
        zip[zip.AsSpan().IndexOf("PK\u0001\u0002"u8) + 8] |= 1;
        File.WriteAllBytes(path, zip);

        var error = Assert.Throws<InvalidDataException>(() => TraceFile.Open(path, null, null));
        Assert.Equal($"{path}[arr_0]: encrypted (a password-protected archive), which replay cannot read; np.savez encrypts nothing: give the archive unencrypted.", error.Message);
    }

    /// <summary>
    /// An archive of many forward passes is read with one chunk buffer, not one per member kept for the
    /// whole replay (3,000 members of 1 MiB took 3 GB): 64 members of 256 KiB allocate well under one member's
    /// share each.
    /// </summary>
    [Fact]
    public void MembersShareOneReadBuffer()
    {
        const int Members = 64, Tokens = 1 << 18;
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "step.npy"), "|i1", $"{Tokens}, 1", new byte[Tokens]);
        var path = Path.Combine(_folder.FullName, "passes.npz");
        using (var archive = ZipFile.Open(path, ZipArchiveMode.Create))
        {
            for (var member = 0; member < Members; member++)
            {
                archive.CreateEntryFromFile(npy, $"arr_{member}.npy", CompressionLevel.NoCompression);
            }
        }

        using var trace = TraceFile.Open(path, null, null);
        var step = new int[Tokens];
        trace.ReadStep(0, step);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var s = 1; s < trace.Steps; s++)
        {
            Assert.Equal(Tokens, trace.ReadStep(s, step));
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(Members, trace.Steps);
        Assert.True(allocated < (Members - 1) * (long)Tokens / 4, $"{allocated:N0} bytes allocated to read {Members - 1} members of {Tokens:N0} bytes");
    }

    /// <summary>
    /// A deflated member in a tokens-first layout whose one row holds k = 2^21 int64 ids (16 MiB, 16 KB deflated) is
    /// read in pieces of the reader's chunk, not in a chunk of the row's size: with k = 2^27 that chunk took a GiB
    /// beyond the step's ids, and with k = 2^28 its byte count overflowed (an unexpected error).
    /// </summary>
    [Fact]
    public void ADeflatedRowLongerThanAChunkIsReadInPieces()
    {
        const int TopK = 1 << 21;
        var path = Path.Combine(_folder.FullName, "wide.npz");
        using (var archive = ZipFile.Open(path, ZipArchiveMode.Create))
        using (var member = archive.CreateEntry("arr_0.npy", CompressionLevel.Optimal).Open())
        {
            NpyFile.WriteHeader(member, "<i8", $"1, 1, 1, {TopK}");
            var zeros = new byte[1 << 16];
            for (var written = 0L; written < TopK * 8L; written += zeros.Length)
            {
                member.Write(zeros);
            }
        }

        using var trace = TraceFile.Open(path, IdLayout.StepsTokensLayersK, null);
        var step = new int[TopK];
        Array.Fill(step, -1);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(1, trace.ReadStep(0, step));
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(-1, step.AsSpan().IndexOfAnyExcept(0));
        Assert.True(allocated < 4 << 20, $"{allocated:N0} bytes allocated to read a row of {TopK * 8L:N0} bytes");
    }

    /// <summary>
    /// A JSON-lines step is read from its line's text, value by value: reading a line of 2^18 tokens again
    /// allocates a small part of its length (a name for each token's messages took 5.8 times the line), and its
    /// ids are the ones written. The parsed document this replaced rented its rows (12 bytes a value) from a
    /// shared pool, which allocation counts do not see: its peak memory is measured with the CLI instead.
    /// </summary>
    [Fact]
    public void AJsonLinesStepIsReadWithoutADocumentOfItsLine()
    {
        const int Tokens = 1 << 18;
        var ids = Enumerable.Range(0, Tokens * 2).Select(i => (i * 7) % 61).ToArray();
        var line = $"{{\"topk_ids\": [{string.Join(", ", ids.Chunk(2).Select(token => $"[{token[0]}, {token[1]}]"))}]}}";
        var path = Path.Combine(_folder.FullName, "prefill.jsonl");
        File.WriteAllText(path, line + "\n");

        using var trace = TraceFile.Open(path, null, null);
        var step = new int[Tokens * 2];
        trace.ReadStep(0, step);
        var before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Equal(Tokens, trace.ReadStep(0, step));
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(ids, step);
        Assert.True(allocated < line.Length / 16, $"{allocated:N0} bytes allocated to read a line of {line.Length:N0} bytes");
    }

    /// <summary>
    /// The last data byte of the archive's first member: the byte before the next member's local
    /// header or the central directory (np.savez writes sizes in zip64 fields and no data descriptor;
    /// small ids never spell a zip signature).
    /// </summary>
    private static int LastMemberDataByte(byte[] zip)
    {
        var rest = zip.AsSpan(4);
        var next = Math.Min(
            rest.IndexOf("PK\u0003\u0004"u8) is var local and >= 0 ? local : int.MaxValue,
            rest.IndexOf("PK\u0001\u0002"u8));
        return 4 + next - 1;
    }
}
