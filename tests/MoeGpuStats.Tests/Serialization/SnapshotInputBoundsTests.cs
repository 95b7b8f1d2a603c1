using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Serialization;

namespace MoeGpuStats.Tests.Serialization;

/// <summary>
/// Snapshot input of a size nothing checked: a long value, a long field name or a great many fields. The readers
/// copied such a value whole into their message (a 200 MB string given as <c>experts</c>: 2.3 GB and a line of 200 MB)
/// and every field name into a set (16,000,000 unknown fields: 2.6 GB, 17 s, accepted). Each is refused on one line
/// that shows a short prefix, allocating little beyond the parsed document.
/// </summary>
[UseCulture("sv-SE")]
public sealed class SnapshotInputBoundsTests : IDisposable
{
    /// <summary>Long enough that a copy of it dwarfs what a read allocates otherwise, short enough to stay fast.</summary>
    private const int Long = 10_000_000;

    /// <summary>
    /// What a read may allocate beyond the JSON's size (the size of one copy of it, as a file read into memory): its
    /// document's copy of the value and the parser's rows are rented, and so reused by the reads measured after a first,
    /// and a message is short. A copy of the long value as a string is twice its size.
    /// </summary>
    private const int Slack = 1 << 20;

    /// <summary>A layer's snapshot of 11 fields, the first <c>total_routings</c>.</summary>
    private static readonly string Layer = Snapshots.Snapshot(2, 0);

    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-snapshot-bounds-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>A long value is shown by its first 40 characters, or as an array by its length: <c>merged_parts</c> and <c>experts</c> quoted it whole.</summary>
    [Theory]
    [InlineData("experts", "string", "The field 'experts' is \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...; it must be a 32-bit whole number (at most 2,147,483,647).")]
    [InlineData("merged_parts", "zeros", "The field 'merged_parts' is an array of 5,000,000 values; it must be a whole number from 1 to 1,048,576 (the recordings a merge combines).")]
    [InlineData("total_tokens", "digits", "The field 'total_tokens' is 1111111111111111111111111111111111111111...; a count is a whole number from 0 to 9,223,372,036,854,775,807.")]
    [InlineData("average_router_z_loss", "digits", "The field 'average_router_z_loss' is 1111111111111111111111111111111111111111...; beyond a float's range (null stands for NaN).")]
    public void ALongValueIsShownByItsStartWithoutACopy(string field, string value, string message)
    {
        var json = WithField(Layer, field, value switch
        {
            "string" => "\"" + new string('x', Long) + "\"",
            "zeros" => "[" + string.Join(',', Enumerable.Repeat('0', Long / 2)) + "]",
            _ => new string('1', Long),
        });

        var (error, allocated) = Refused(json);

        Assert.Equal(message, error.Message);
        Assert.InRange(allocated, 0, json.Length + Slack);
    }

    /// <summary>A file's long value is refused as the converter's is, naming the file, and read into memory once.</summary>
    [Fact]
    public void ALongValueInAFileIsRefusedWithoutACopy()
    {
        var json = WithField(Layer, "experts", "\"" + new string('x', Long) + "\"");
        var path = Path.Combine(_folder.FullName, "long.json");
        File.WriteAllBytes(path, json);

        var (error, allocated) = Measured<InvalidDataException>(() => RoutingStatsFile.Load(path));

        Assert.Equal($"{path}: not a routing statistics snapshot (The field 'experts' is \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...; it must be a 32-bit whole number (at most 2,147,483,647).)", error.Message);
        Assert.InRange(allocated, 0, (2L * json.Length) + Slack);
    }

    /// <summary>
    /// Unknown fields are skipped, as the seed's serde skips them, up to 256 fields in all; past that an object is
    /// refused, counted without a name read, at the snapshot's top and in its nested objects.
    /// </summary>
    [Theory]
    [InlineData("", 245, null)]
    [InlineData("", 246, "The object holds 257 fields; a snapshot's objects hold at most 256 (their known fields, 21 at most, and a few unknown ones, which are skipped).")]
    [InlineData("capacity_stats", 300, "The object 'capacity_stats' holds 305 fields; a snapshot's objects hold at most 256 (their known fields, 21 at most, and a few unknown ones, which are skipped).")]
    [InlineData("routing_latency_stats", 300, "The object 'routing_latency_stats' holds 305 fields; a snapshot's objects hold at most 256 (their known fields, 21 at most, and a few unknown ones, which are skipped).")]
    public void AnObjectOfMoreThan256FieldsIsRefused(string within, int unknown, string? message)
    {
        var json = WithFields(Layer, within, Enumerable.Range(0, unknown).Select(i => $"\"unknown_{i}\":0"));

        ReadsOrRefuses(json, message);
    }

    /// <summary>
    /// An unknown field's value may nest until the file is 64 levels deep, System.Text.Json's default (the seed's
    /// serde_json allows 128): README says so. Deeper is refused on one line, by the converter and in a file.
    /// </summary>
    [Theory]
    [InlineData(63)]
    [InlineData(64)]
    public void AnUnknownFieldNestsUntilTheFileIs64LevelsDeep(int arrays)
    {
        var json = WithField(Layer, "unknown", new string('[', arrays) + new string(']', arrays));
        var path = Path.Combine(_folder.FullName, "deep.json");
        File.WriteAllBytes(path, json);
        if (arrays == 63)
        {
            using var read = JsonSerializer.Deserialize<RoutingStats>(json)!;
            using var loaded = RoutingStatsFile.Load(path);
            Assert.Equal(JsonSerializer.Serialize(read), JsonSerializer.Serialize(loaded));
            return;
        }

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(json));
        var fileError = Assert.Throws<InvalidDataException>(() => RoutingStatsFile.Load(path));
        Assert.StartsWith("The maximum configured depth of 64 has been exceeded.", error.Message);
        Assert.StartsWith($"{path}: not a routing statistics snapshot (The maximum configured depth of 64 has been exceeded.", fileError.Message);
        Assert.DoesNotContain('\n', fileError.Message);
    }

    /// <summary>A million unknown fields cost no string of each name: they were read into a set and accepted.</summary>
    [Fact]
    public void AMillionUnknownFieldsAreRefusedWithoutReadingTheirNames()
    {
        var json = WithFields(Layer, "", Enumerable.Range(0, 1_000_000).Select(i => $"\"u{i}\":0"));

        var (error, allocated) = Refused(json);

        Assert.Equal("The object holds 1,000,011 fields; a snapshot's objects hold at most 256 (their known fields, 21 at most, and a few unknown ones, which are skipped).", error.Message);
        Assert.InRange(allocated, 0, json.Length + Slack);
    }

    /// <summary>A file of a million unknown fields is refused before the lookups that tell a model from a layer, by the library and by the CLI.</summary>
    [Fact]
    public void AFileOfAMillionUnknownFieldsIsRefusedWithoutReadingTheirNames()
    {
        var json = WithFields(Layer, "", Enumerable.Range(0, 1_000_000).Select(i => $"\"u{i}\":0"));
        var path = Path.Combine(_folder.FullName, "fields.json");
        File.WriteAllBytes(path, json);
        const string Refusal = "not a routing statistics snapshot (The object holds 1,000,011 fields; a snapshot's objects hold at most 256 (their known fields, 21 at most, and a few unknown ones, which are skipped)";

        var (error, allocated) = Measured<InvalidDataException>(() => RoutingStatsFile.Load(path));

        Assert.Equal($"{path}: {Refusal}.)", error.Message);
        Assert.InRange(allocated, 0, (2L * json.Length) + Slack);
        Assert.Equal($"{path}: {Refusal}); this command reads the file that --save writes (replay --save FILE.json).", Assert.Throws<InvalidDataException>(() => SnapshotFile.Load(path)).Message);
    }

    /// <summary>
    /// A value shown in a message has what a terminal acts on escaped: JSON lets a string hold U+009B (CSI) and the
    /// bidirectional overrides unescaped, which a message printed them raw.
    /// </summary>
    [Fact]
    public void AValueShownInAMessageHasWhatATerminalActsOnEscaped()
    {
        var json = WithField(Layer, "experts", "\"\u009b31m\u202eevil\"");

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(json));

        Assert.Equal(@"The field 'experts' is ""\u009b31m\u202eevil""; it must be a 32-bit whole number (at most 2,147,483,647).", error.Message);
    }

    /// <summary>
    /// A field name past 256 bytes as written is refused by its length, before any lookup: a long one was kept as a
    /// string and accepted, and an escaped one was unescaped again by each lookup of a field.
    /// </summary>
    [Theory]
    [InlineData("", "n", "The field name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...' is 10,000,000 bytes long; a snapshot's field names are at most 256 bytes as written.")]
    [InlineData("", "\\u006e", "The field name '\\u006e\\u006e\\u006e\\u006e\\u006e\\u006e\\u00...' is 10,000,002 bytes long; a snapshot's field names are at most 256 bytes as written.")]
    [InlineData("capacity_stats", "n", "The field name 'capacity_stats.nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...' is 10,000,000 bytes long; a snapshot's field names are at most 256 bytes as written.")]
    public void ALongFieldNameIsRefusedWithoutACopy(string within, string character, string message)
    {
        var name = string.Concat(Enumerable.Repeat(character, (Long / character.Length) + (character.Length > 1 ? 1 : 0)));
        var json = WithFields(Layer, within, [$"\"{name}\":0"]);

        var (error, allocated) = Refused(json);

        Assert.Equal(message, error.Message);
        Assert.InRange(allocated, 0, json.Length + Slack);
    }

    /// <summary>The bound is on the bytes as written: a name of 256 is an unknown field, skipped; 257 is refused.</summary>
    [Theory]
    [InlineData(256, null)]
    [InlineData(257, "The field name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...' is 257 bytes long; a snapshot's field names are at most 256 bytes as written.")]
    public void AFieldNameOf256BytesIsSkipped(int bytes, string? message)
    {
        var json = WithFields(Layer, "", [$"\"{new string('n', bytes)}\":0"]);

        ReadsOrRefuses(json, message);
    }

    /// <summary>Names are still compared as text: an escaped name repeats the name it spells.</summary>
    [Fact]
    public void AnEscapedNameRepeatsTheNameItSpells()
    {
        var json = WithFields(Layer, "", ["\"ab\":0", "\"a\\u0062\":1"]);

        var error = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(json));

        Assert.Equal("The field 'ab' is given twice; a snapshot gives each field once.", error.Message);
    }

    /// <summary>A model's own object and each of its layers are bounded alike, a layer before its merge is looked for.</summary>
    [Theory]
    [InlineData("model", "The object holds 306 fields; a snapshot's objects hold at most 256 (their known fields, 21 at most, and a few unknown ones, which are skipped).")]
    [InlineData("layer", "layers[0]: The object holds 312 fields; a snapshot's objects hold at most 256 (their known fields, 21 at most, and a few unknown ones, which are skipped).")]
    [InlineData("name", "layers[0]: The field name 'nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...' is 10,000,000 bytes long; a snapshot's field names are at most 256 bytes as written.")]
    public void AModelAndItsLayersAreBoundedAlike(string where, string message)
    {
        using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 2 });
        var written = JsonSerializer.Serialize(model);
        var fields = where == "name" ? [$"\"{new string('n', Long)}\":0"] : Enumerable.Range(0, 300).Select(i => $"\"unknown_{i}\":0");
        var json = Encoding.UTF8.GetBytes(where == "model"
            ? "{" + string.Join(',', fields) + "," + written[1..]
            : written.Replace("\"layers\":[{", "\"layers\":[{" + string.Join(',', fields) + ",", StringComparison.Ordinal));

        var (error, allocated) = Measured<JsonException>(() => JsonSerializer.Deserialize<ModelRoutingStats>(json));

        Assert.Equal(message, error.Message);
        Assert.InRange(allocated, 0, json.Length + Slack);
    }

    /// <summary><paramref name="snapshot"/> with <paramref name="field"/> as <paramref name="value"/> (given first where the snapshot lacks it), as UTF-8.</summary>
    private static byte[] WithField(string snapshot, string field, string value)
    {
        var given = new Regex($"\"{field}\":[^,}}]*");
        return given.IsMatch(snapshot) ? Encoding.UTF8.GetBytes(given.Replace(snapshot, $"\"{field}\":{value}", 1)) : WithFields(snapshot, "", [$"\"{field}\":{value}"]);
    }

    /// <summary><paramref name="snapshot"/> with <paramref name="fields"/> first in the object <paramref name="within"/> (the top one where empty), as UTF-8.</summary>
    private static byte[] WithFields(string snapshot, string within, IEnumerable<string> fields)
    {
        var start = within.Length == 0 ? "{" : $"\"{within}\":{{";
        Assert.Contains(start, snapshot);
        var at = snapshot.IndexOf(start, StringComparison.Ordinal) + start.Length;
        return Encoding.UTF8.GetBytes(snapshot[..at] + string.Join(',', fields) + "," + snapshot[at..]);
    }

    /// <summary>Reads <paramref name="json"/>, the one batch of <see cref="Layer"/>, where <paramref name="message"/> is null; else asserts the converter refuses it with that message.</summary>
    private static void ReadsOrRefuses(byte[] json, string? message)
    {
        if (message is null)
        {
            using var read = JsonSerializer.Deserialize<RoutingStats>(json)!;
            Assert.Equal(1UL, read.TotalRoutings);
        }
        else
        {
            Assert.Equal(message, Assert.Throws<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(json)).Message);
        }
    }

    /// <summary>The converter's refusal of <paramref name="json"/> and the bytes it allocated, as <see cref="Measured{T}"/>.</summary>
    private static (JsonException Error, long Allocated) Refused(byte[] json) =>
        Measured<JsonException>(() => JsonSerializer.Deserialize<RoutingStats>(json));

    /// <summary>
    /// The exception <paramref name="read"/> throws and the fewest bytes a read after the first allocated on this thread:
    /// the first rents the parser's buffers, which the later ones reuse (two, in case a collection trimmed the pool
    /// between), so what is left is what the read itself copies.
    /// </summary>
    private static (T Error, long Allocated) Measured<T>(Func<object?> read)
        where T : Exception
    {
        Assert.Throws<T>(read);
        var fewest = long.MaxValue;
        T? error = null;
        for (var run = 0; run < 2; run++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            error = Assert.Throws<T>(read);
            fewest = Math.Min(fewest, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        return (error!, fewest);
    }
}
