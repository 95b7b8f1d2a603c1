using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Output;

namespace MoeGpuStats.Tests.Cli.Output;

/// <summary>Standard error's lines escaped as written, so that no file name quoted in a message splits it or drives the terminal.</summary>
public sealed class EscapedLinesWriterTests
{
    [Fact]
    public void ALineIsEscapedAndTheProgramsOwnTextIsNot()
    {
        using var inner = new StringWriter { NewLine = "\n" };
        using var writer = new EscapedLinesWriter(inner) { NewLine = "\n" };

        writer.WriteLine("a\nb\u001b[31m.npy: bad.");
        writer.WriteLine($"{12:N0} {"c\rd"}");
        writer.Write("\rbar 50 %");
        writer.WriteLine();

        Assert.Equal("a\\nb\\u001b[31m.npy: bad.\n12 c\\rd\n\rbar 50 %\n", inner.ToString());
    }

    /// <summary>
    /// The kind: every message a command writes about a file it names, not only the ones that escaped the name
    /// themselves (a layout a shape leaves open, --replicas below the experts, --groups that do not divide them).
    /// </summary>
    [Theory]
    [InlineData("replay", "ids", "2, 3, 2")]
    [InlineData("plan", "load", "2, 8", "--replicas", "4", "--gpus", "2")]
    [InlineData("plan", "load", "2, 8", "--replicas", "8", "--gpus", "2", "--groups", "3")]
    public void AUsageErrorNamingAFileWithALineBreakAndAnEscapeIsOneLineShownAsWritten(string command, string stem, string shape, params string[] options)
    {
        var folder = Directory.CreateTempSubdirectory("moegs-escaped-");
        try
        {
            var path = Path.Combine(folder.FullName, $"{stem}\u001b[31m\nname.npy");
            var count = shape.Split(", ").Aggregate(1, (product, d) => product * int.Parse(d, System.Globalization.CultureInfo.InvariantCulture));
            NpyFile.Write(path, "<i8", shape, [.. Enumerable.Repeat(1L, count).SelectMany(BitConverter.GetBytes)]);

            var (code, _, error) = Moegs.Run([command, path, .. options]);

            Assert.Equal(ExitCodes.Usage, code);
            Assert.Single(error.TrimEnd().Split('\n'));
            Assert.DoesNotContain('\u001b', error);
            Assert.Contains(path.Replace("\n", @"\n", StringComparison.Ordinal).Replace("\u001b", @"\u001b", StringComparison.Ordinal), error);
        }
        finally
        {
            folder.Delete(recursive: true);
        }
    }
}
