using MoeGpuStats.Cli;

namespace MoeGpuStats.Tests.Cli;

/// <summary>ErrorText: the library's messages as <c>moegs</c> prints them.</summary>
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
        Assert.Equal(@"a\r\tb\x1b", ErrorText.OneLine("a\r\tb\u001b"));
        Assert.Equal("plain text", ErrorText.OneLine("plain text"));
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
