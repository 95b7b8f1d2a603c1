using System.Text.RegularExpressions;

namespace MoeGpuStats.Tests.Scripts;

/// <summary>
/// README's block of "the other commands", line by line, on the inputs scripts/sample_inputs.py writes: a newcomer
/// runs them as given, so each must work (exit 0) on the files the README says make them.
/// </summary>
public sealed partial class ReadmeCommandsTests
{
    private const string Command = "dotnet run --project src/MoeGpuStats.Cli -- ";

    [Fact]
    public void EveryLineOfTheOtherCommandsRunsOnTheSampleInputs()
    {
        var root = Checkout.RequireRoot("README.md and scripts/sample_inputs.py are not here");
        // Debian's python3 first, where .ci/run installs NumPy, as the Python tests look for torch.
        var python = new[] { "/usr/bin/python3", ExternalProgram.FindOnPath("python3") }.FirstOrDefault(candidate =>
        {
            if (candidate is null || !File.Exists(candidate))
            {
                return false;
            }

            ExternalProgram.Run(candidate, "-c \"import numpy\"", out var exitCode);
            return exitCode == 0;
        });
        Assert.SkipWhen(python is null, "scripts/sample_inputs.py needs NumPy, which no python3 here imports");

        var lines = OtherCommands(File.ReadAllText(Path.Combine(root, "README.md")));
        Assert.True(lines.Count >= 10, $"README's block of other commands has {lines.Count} lines");
        var folder = Directory.CreateTempSubdirectory("moegs-readme-").FullName;
        try
        {
            var written = ExternalProgram.Run(python!, $"\"{Path.Combine(root, "scripts", "sample_inputs.py")}\" \"{folder}\"", out var exitCode);
            Assert.True(exitCode == 0, written);
            foreach (var line in lines)
            {
                // The files a line names are the folder's: an argument with an extension is a file.
                var args = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)
                    .Select(arg => FileName().IsMatch(arg) ? Path.Combine(folder, arg) : arg)
                    .ToArray();
                var (code, _, error) = Moegs.Run(args);
                Assert.True(code == 0, $"moegs {line}: exit {code}\n{error}");
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>The arguments of each <c>dotnet run … --</c> line of the code block after "The other commands", comments dropped.</summary>
    private static List<string> OtherCommands(string readme)
    {
        var start = readme.IndexOf("The other commands", StringComparison.Ordinal);
        Assert.True(start >= 0, "README has no \"The other commands\"");
        var open = readme.IndexOf("```\n", start, StringComparison.Ordinal) + 4;
        var block = readme[open..readme.IndexOf("```", open, StringComparison.Ordinal)];
        return [.. block.Split('\n')
            .Where(line => line.StartsWith(Command, StringComparison.Ordinal))
            .Select(line => line[Command.Length..].Split('#')[0].Trim())];
    }

    [GeneratedRegex(@"^[\w-]+\.(npy|npz|jsonl|json|png)$")]
    private static partial Regex FileName();
}
