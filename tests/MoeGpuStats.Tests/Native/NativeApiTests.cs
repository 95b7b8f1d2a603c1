using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using System.Text.RegularExpressions;

namespace MoeGpuStats.Tests.Native;

/// <summary>
/// <see cref="MoeGpuStats.Native.NativeApi"/>, the C API, through its real callers: the C test
/// program and the Python wrapper's tests, run as processes against native/out (built by
/// native/build.sh; .ci/run builds it and sets MOEGS_REQUIRE_NATIVE=1 so that a missing build fails
/// instead of skipping). Its model entry points are also called in process (NativeApiTests.Model.cs).
/// </summary>
public sealed partial class NativeApiTests
{
    [Fact]
    public void TheCProgramSeesTheManagedEnginesNumbers()
    {
        var output = ExternalProgram.Run(Path.Combine(NativeOut(), "test_moegs"), "", out var exitCode);
        Assert.True(exitCode == 0, output);
        Assert.Contains(", 0 failed", output);
    }

    /// <summary>
    /// README's C examples, built as it says (<c>cc example.c -I include -L native/out -lmoegs</c>; a body of
    /// <c>main</c> inside one), print what the README says they print.
    /// </summary>
    [Fact]
    public void TheReadmesCExamplesPrintWhatItSays()
    {
        var root = NativeOut();
        var checkout = Path.GetFullPath(Path.Combine(root, "..", ".."));
        var examples = CExample().Matches(File.ReadAllText(Path.Combine(checkout, "README.md")));
        Assert.True(examples.Count >= 2, $"README has {examples.Count} C examples that say what they print");
        var compiler = Environment.GetEnvironmentVariable("CC") is { Length: > 0 } cc ? cc : "cc";
        var folder = Directory.CreateTempSubdirectory("moegs-readme-c-").FullName;
        try
        {
            for (var i = 0; i < examples.Count; i++)
            {
                var code = examples[i].Groups["code"].Value;
                var program = code.Contains("int main", StringComparison.Ordinal)
                    ? code
                    : $"#include <stdio.h>\n#include \"moegs.h\"\n\nint main(void)\n{{\n{code}return 0;\n}}\n";
                var source = Path.Combine(folder, $"example{i}.c");
                File.WriteAllText(source, program);
                var executable = Path.Combine(folder, $"example{i}");
                var built = ExternalProgram.Run(
                    compiler, $"\"{source}\" -I \"{Path.Combine(checkout, "include")}\" -L \"{root}\" -lmoegs -Wl,-rpath,\"{root}\" -o \"{executable}\"", out var buildCode);
                Assert.True(buildCode == 0, $"{compiler} example {i}: {built}");
                var printed = ExternalProgram.Run(executable, "", out var exitCode);
                Assert.True(exitCode == 0, printed);
                Assert.Equal(examples[i].Groups["prints"].Value, printed.Trim());
            }
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>A C code block of README, then (after a shell block, where one shows how to build it) what it prints.</summary>
    [GeneratedRegex(@"```c\n(?<code>(?:(?!```).)*)```\n(?:\n```\n(?:(?!```).)*```\n)?\nprints `(?<prints>[^`]*)`", RegexOptions.Singleline)]
    private static partial Regex CExample();

    /// <summary>
    /// The Python tests under python3 on PATH, and under Debian's /usr/bin/python3 where that is another
    /// interpreter (a pyenv or venv python3 first on PATH): Debian's is the one .ci/run gives NumPy and torch,
    /// so the checks that need them (NumPy's zero-copy view) run there instead of skipping. The test of the
    /// all-reduce example finds a Python with torch itself.
    /// </summary>
    [Theory]
    [InlineData("python3 on PATH")]
    [InlineData("/usr/bin/python3")]
    public void ThePythonWrapperSeesTheManagedEnginesNumbers(string interpreter)
    {
        var root = NativeOut();
        var onPath = ExternalProgram.FindOnPath("python3");
        string python;
        if (interpreter == "python3 on PATH")
        {
            python = onPath ?? Skip("python3 is not on PATH");
        }
        else
        {
            python = File.Exists(interpreter) ? interpreter : Skip($"{interpreter} does not exist");
            if (onPath is not null && Resolved(onPath) == Resolved(python))
            {
                Skip($"{interpreter} is python3 on PATH, whose run is the other case");
            }
        }

        var tests = Path.GetFullPath(Path.Combine(root, "..", "..", "python", "tests"));
        var output = ExternalProgram.Run(python, $"-m unittest discover -s \"{tests}\" -v", out var exitCode, ("MOEGS_LIB", Path.Combine(root, "libmoegs.so")));
        Assert.True(exitCode == 0, output);

        // unittest's summary: some tests ran, and its verdict line is OK (with or without skips, which it names).
        Assert.Matches(@"Ran [1-9][0-9]* tests? in", output);
        Assert.Matches(@"(?m)^OK( \(|\r?$)", output);
    }

    /// <summary>
    /// The managed side writes <c>NativeSnapshot</c> through the C caller's <c>moegs_snapshot*</c>: a field
    /// in another order or of another width there is silently wrong numbers, a larger struct memory
    /// corruption. So every field of the header's struct, in order, has the C# field of the same name and
    /// width at the same offset, and the sizes agree. (The C test and the Python tests compare their own
    /// struct's size with the library's moegs_snapshot_size.)
    /// </summary>
    [Fact]
    public void TheManagedSnapshotIsTheHeadersStructFieldByField()
    {
        var root = NativeOut();
        var header = File.ReadAllText(Path.GetFullPath(Path.Combine(root, "..", "..", "include", "moegs.h")));
        var body = Regex.Match(header, @"typedef struct moegs_snapshot \{(.*?)\} moegs_snapshot;", RegexOptions.Singleline);
        Assert.True(body.Success, "include/moegs.h declares no moegs_snapshot");
        var fields = Regex.Matches(Regex.Replace(body.Groups[1].Value, @"/\*.*?\*/", "", RegexOptions.Singleline), @"(\w+)\s+(\w+)\s*;")
            .Select(m => (Type: m.Groups[1].Value, Name: m.Groups[2].Value))
            .ToList();

        // Not the test's own reference: the assembly libmoegs.so loads, as native/build.sh published it.
        var assembly = new AssemblyLoadContext("moegs-native").LoadFromAssemblyPath(Path.Combine(root, "MoeGpuStats.Native.dll"));
        var snapshot = assembly.GetType("MoeGpuStats.Native.NativeSnapshot", throwOnError: true)!;
        var managed = snapshot.GetFields(BindingFlags.Public | BindingFlags.Instance).OrderBy(f => Marshal.OffsetOf(snapshot, f.Name).ToInt64()).ToList();

        var widths = new Dictionary<string, (Type Managed, int Bytes)>
        {
            ["uint64_t"] = (typeof(ulong), 8), ["int32_t"] = (typeof(int), 4), ["double"] = (typeof(double), 8), ["float"] = (typeof(float), 4),
        };
        long offset = 0, alignment = 1;
        var expected = new List<string>();
        foreach (var (type, name) in fields)
        {
            var (clr, bytes) = widths[type];
            offset = (offset + bytes - 1) / bytes * bytes; // C's natural alignment, as on every ABI the library builds for
            alignment = Math.Max(alignment, bytes);
            expected.Add($"{offset}: {clr.Name} {PascalCase(name)}");
            offset += bytes;
        }

        var actual = managed.Select(f => $"{Marshal.OffsetOf(snapshot, f.Name)}: {f.FieldType.Name} {f.Name}").ToList();
        Assert.Equal(expected, actual);
        Assert.Equal((offset + alignment - 1) / alignment * alignment, Marshal.SizeOf(snapshot));
    }

    /// <summary>The file a path names, its symbolic links followed.</summary>
    private static string Resolved(string path) =>
        new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(path);

    /// <summary>The C field's name as NativeSnapshot spells it: load_variance_history_len is LoadVarianceHistoryLength there.</summary>
    private static string PascalCase(string name) => name == "load_variance_history_len"
        ? "LoadVarianceHistoryLength"
        : string.Concat(name.Split('_').Select(part => char.ToUpperInvariant(part[0]) + part[1..]));

    private static string NativeOut()
    {
        if (Checkout.Root is { } root && File.Exists(Path.Combine(root, "native", "out", "libmoegs.so")))
        {
            return Path.Combine(root, "native", "out");
        }

        var reason = "native/out is not built: run `bash native/build.sh` (needs the .NET SDK and a C compiler)";
        if (Environment.GetEnvironmentVariable("MOEGS_REQUIRE_NATIVE") == "1")
        {
            Assert.Fail(reason);
        }

        return Skip(reason);
    }

    private static string Skip(string reason)
    {
        Assert.Skip(reason);
        return reason;
    }
}
