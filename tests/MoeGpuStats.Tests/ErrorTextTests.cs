using MoeGpuStats.Cli;

namespace MoeGpuStats.Tests;

/// <summary>ErrorText: the library's messages as <c>moegs</c> prints them and the C API returns them.</summary>
public sealed class ErrorTextTests
{
    [Fact]
    public void LibraryMessagesLoseTheirParameterNames()
    {
        Assert.Equal("The snapshots differ.", ErrorText.Of(new ArgumentException("The snapshots differ.", "parts")));
        Assert.Equal("Too many.", ErrorText.Of(new ArgumentOutOfRangeException("tokens", 7, "Too many.")));
        Assert.Equal("Plain.", ErrorText.Of(new InvalidOperationException("Plain.")));
    }

    [Fact]
    public void ANameWithALineBreakKeepsTheMessageWholeOnOneLine()
    {
        Assert.Equal(@"x\ny.npy: not a NumPy .npy file.", ErrorText.Of(new InvalidDataException("x\ny.npy: not a NumPy .npy file.")));
        Assert.Equal(@"a.npy\u001b[31m: bad.", ErrorText.Of(new ArgumentException("a.npy\u001b[31m: bad.", "path")));
    }

    /// <summary>
    /// A message inside a message's parentheses loses its closing period, as the JSON errors' do: "(… is missing).",
    /// not "(… is missing.).". An ellipsis stays.
    /// </summary>
    [Fact]
    public void AClauseInParenthesesEndsWithoutItsPeriod()
    {
        Assert.Equal("The field 'x' is missing", ErrorText.Clause(new InvalidDataException("The field 'x' is missing.")));
        Assert.Equal("Reading...", ErrorText.Clause(new IOException("Reading...")));
        Assert.Equal("No such file", ErrorText.Clause(new IOException("No such file")));

        var folder = Directory.CreateTempSubdirectory("moegs-clause-");
        try
        {
            var path = Path.Combine(folder.FullName, "empty.json");
            File.WriteAllText(path, "{}");
            Assert.Equal($"{path}: not a routing statistics snapshot (The field 'routing_latency_stats' is missing); this command reads the file that --save writes (replay --save FILE.json).", Moegs.Run("report", path).Error.Trim());
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>
    /// A JSON error gives its line and byte from 1, as an editor does, not .NET's zero-based <c>LineNumber</c>; a
    /// serializer's path is kept. Checked on what the parser throws, and through <c>report</c> and <c>plan</c>.
    /// </summary>
    [Fact]
    public void AJsonErrorCountsItsLineAndByteFromOne()
    {
        var parse = Assert.ThrowsAny<System.Text.Json.JsonException>(() => System.Text.Json.JsonDocument.Parse("{\"a\": 1,\n \"b\": tru}"));
        Assert.Equal("'tru}' is an invalid JSON literal. Expected the literal 'true', at line 2, byte 10", ErrorText.Of(parse));
        var convert = Assert.Throws<System.Text.Json.JsonException>(() => System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>("{\"a\": \"x\"}"));
        Assert.StartsWith("The JSON value could not be converted to System.Int32. Path: $.a, at line 1, byte ", ErrorText.Of(convert));
        Assert.Equal("Not a layer.", ErrorText.Of(new System.Text.Json.JsonException("Not a layer.")));
        var comma = Assert.ThrowsAny<System.Text.Json.JsonException>(() => System.Text.Json.JsonDocument.Parse("[1, 2,]"));
        Assert.Equal("The JSON array contains a trailing comma at the end, which JSON does not allow, at line 1, byte 7", ErrorText.Of(comma));

        var folder = Directory.CreateTempSubdirectory("moegs-json-");
        try
        {
            var path = Path.Combine(folder.FullName, "notes.json");
            File.WriteAllText(path, "hello");
            Assert.Equal($"{path}: not a routing statistics snapshot ('h' is an invalid start of a value, at line 1, byte 1); this command reads the file that --save writes (replay --save FILE.json).", Moegs.Run("report", path).Error.Trim());
            Assert.Equal($"{path}: neither a .npy file nor JSON ('h' is an invalid start of a value, at line 1, byte 1).", Moegs.Run("plan", path, "--replicas", "16", "--gpus", "8").Error.Trim());
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }

    /// <summary>Each command's lines about a file (a missing input, a bad output name, a file it cannot read) stay one line when the name holds a newline.</summary>
    [Theory]
    [InlineData("replay", "missing\nfile.npy")]
    [InlineData("replay", "in.npy", "--plot", "bad\nname.txt")]
    [InlineData("report", "missing\nsnapshot.json")]
    public void AFileNameWithANewlineIsShownEscapedOnOneLine(params string[] arguments)
    {
        var folder = Directory.CreateTempSubdirectory("moegs-newline-");
        try
        {
            NpyFile.Write(Path.Combine(folder.FullName, "in.npy"), "<i4", "2, 2", [.. new[] { 0, 1, 1, 0 }.SelectMany(BitConverter.GetBytes)]);
            var given = arguments.Select(a => a.EndsWith(".npy", StringComparison.Ordinal) || a.EndsWith(".json", StringComparison.Ordinal) || a.EndsWith(".txt", StringComparison.Ordinal) ? Path.Combine(folder.FullName, a) : a).ToArray();

            var (code, _, error) = Moegs.Run(given);

            Assert.NotEqual(ExitCodes.Ok, code);
            Assert.Single(error.TrimEnd().Split('\n'));
            Assert.Contains(given.Single(a => a.Contains('\n', StringComparison.Ordinal)).Replace("\n", @"\n", StringComparison.Ordinal), error);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }
}
