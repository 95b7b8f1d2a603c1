using System.Text.RegularExpressions;

namespace MoeGpuStats.Tests.Scripts;

/// <summary>
/// README's blocks of commands, line by line: the whole model's walk from simulation to placement, and "the other
/// commands" on the inputs scripts/sample_inputs.py writes. A newcomer runs them as given, so each must work (exit 0)
/// on the files the README says make them.
/// </summary>
public sealed partial class ReadmeCommandsTests
{
    private const string Command = "dotnet run --project src/MoeGpuStats.Cli -- ";

    [Fact]
    public void EveryLineOfTheWholeModelWalkRuns()
    {
        var root = Checkout.RequireRoot("README.md is not here");
        var lines = Block(File.ReadAllText(Path.Combine(root, "README.md")), "A whole model from simulation to placement", "moegs ");
        Assert.True(lines.Count >= 5, $"README's walk from simulation to placement has {lines.Count} lines");
        var folder = Directory.CreateTempSubdirectory("moegs-readme-").FullName;
        try
        {
            RunEach(lines, folder);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

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

        var lines = Block(File.ReadAllText(Path.Combine(root, "README.md")), "The other commands", Command);
        Assert.True(lines.Count >= 10, $"README's block of other commands has {lines.Count} lines");
        var folder = Directory.CreateTempSubdirectory("moegs-readme-").FullName;
        try
        {
            var written = ExternalProgram.Run(python!, $"\"{Path.Combine(root, "scripts", "sample_inputs.py")}\" \"{folder}\"", out var exitCode);
            Assert.True(exitCode == 0, written);
            RunEach(lines, folder);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>
    /// README's C# examples, each run as a .NET 10 file-based program with the two lines README gives
    /// (<c>#:project</c>, <c>#:property PublishAot=false</c>), on the managed engine as README's claims assume: each
    /// exits 0, and one that says what it prints prints it. The model's example runs without the PublishAot line too,
    /// and without MOEGS_ACCELERATOR, where the runtime cannot generate code: <c>Create</c> picks the managed engine
    /// there whatever the machine has, as README says.
    /// </summary>
    [Fact]
    public void EveryCSharpExampleRunsAndPrintsWhatReadmeSays()
    {
        var root = Checkout.RequireRoot("README.md and src/MoeGpuStats are not here");
        var examples = CSharpExample().Matches(File.ReadAllText(Path.Combine(root, "README.md")));
        Assert.True(examples.Count >= 3, $"README has {examples.Count} C# examples");
        var dotnet = Moegs.DotnetHost();

        // One folder for every run: a file-based program's build is kept by its path, so a run reuses the last one's.
        var folder = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "moegs-readme-cs-examples")).FullName;
        string Run(string name, string preamble, string code, params (string Name, string Value)[] environment)
        {
            var program = Path.Combine(folder, $"{name}.cs");
            File.WriteAllText(program, $"#:project {Path.Combine(root, "src", "MoeGpuStats", "MoeGpuStats.csproj")}\n{preamble}{code}");
            var printed = ExternalProgram.Run(dotnet, $"run \"{program}\"", out var exitCode, environment);
            Assert.True(exitCode == 0, $"{name}: exit {exitCode}\n{printed}");
            return printed;
        }

        var compared = 0;
        for (var i = 0; i < examples.Count; i++)
        {
            var code = examples[i].Groups["code"].Value;
            var printed = Run($"example{i}", "#:property PublishAot=false\n", code, (RoutingStats.AcceleratorVariable, "managed"));
            if (!examples[i].Groups["prints"].Success)
            {
                continue;
            }

            var claimed = Backticked().Matches(examples[i].Groups["prints"].Value).Select(match => match.Groups[1].Value).ToArray();
            Assert.Equal(claimed, Lines(printed));
            compared++;
            if (code.Contains("ModelRoutingStats.Create", StringComparison.Ordinal))
            {
                Assert.Equal(claimed, Lines(Run($"example{i}-aot", "", code)));
                compared++;
            }
        }

        Assert.True(compared >= 3, $"{compared} of README's C# claims were compared");
    }

    private static string[] Lines(string printed) => [.. printed.Trim().Split('\n').Select(line => line.TrimEnd())];

    /// <summary>A C# code block of README and, where the next paragraph begins by saying so, what it prints.</summary>
    [GeneratedRegex(@"```csharp\n(?<code>(?:(?!```).)*)```\n(?:\n(?:It )?prints (?<prints>(?:`[^`]*`(?: and )?)+))?", RegexOptions.Singleline)]
    private static partial Regex CSharpExample();

    [GeneratedRegex("`([^`]*)`")]
    private static partial Regex Backticked();

    /// <summary>Runs each line in <paramref name="folder"/>: the files a line names are the folder's (an argument with an extension is a file).</summary>
    private static void RunEach(List<string> lines, string folder)
    {
        foreach (var line in lines)
        {
            var args = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)
                .Select(arg => FileName().IsMatch(arg) ? Path.Combine(folder, arg) : arg)
                .ToArray();
            var (code, _, error) = Moegs.Run(args);
            Assert.True(code == 0, $"moegs {line}: exit {code}\n{error}");
        }
    }

    /// <summary>The arguments of each line starting <paramref name="prefix"/> in the code block after <paramref name="lead"/>, comments dropped.</summary>
    private static List<string> Block(string readme, string lead, string prefix)
    {
        var start = readme.IndexOf(lead, StringComparison.Ordinal);
        Assert.True(start >= 0, $"README has no \"{lead}\"");
        var open = readme.IndexOf("```\n", start, StringComparison.Ordinal) + 4;
        var block = readme[open..readme.IndexOf("```", open, StringComparison.Ordinal)];
        return [.. block.Split('\n')
            .Where(line => line.StartsWith(prefix, StringComparison.Ordinal))
            .Select(line => line[prefix.Length..].Split('#')[0].Trim())];
    }

    [GeneratedRegex(@"^[\w-]+\.(npy|npz|jsonl|json|png)$")]
    private static partial Regex FileName();
}
