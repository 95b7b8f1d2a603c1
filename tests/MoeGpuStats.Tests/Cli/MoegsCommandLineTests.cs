using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Output;
using static MoeGpuStats.Tests.Support.Moegs;

namespace MoeGpuStats.Tests.Cli;

/// <summary>
/// <c>moegs</c> as a whole, run in-process as a user runs it (<see cref="MoeGpuStats.Cli.MoegsCommandLine"/>): parse
/// errors, and what every command does alike. A command's own behaviour is in Commands/.
/// </summary>
[UseCulture("sv-SE")]
public sealed class MoegsCommandLineTests : IDisposable
{
    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-cli-");

    public void Dispose() => _folder.Delete(recursive: true);

    [Theory]
    [InlineData("bogus", "Unrecognized command or argument 'bogus'. Run moegs --help for usage.")]
    [InlineData("replay", "replay needs FILE: the router's top-k ids, a .npy, .npz or JSON-lines file. Run moegs replay --help for usage.")]
    [InlineData("report", "report needs SNAPSHOT.json: a snapshot that --save wrote (one layer's or a model's). Run moegs report --help for usage.")]
    [InlineData("merge", "merge needs SNAPSHOTS: the snapshots of the ranks to combine, each once. Run moegs merge --help for usage.")]
    [InlineData("plan --replicas 8 --gpus 2", "plan needs LOAD: the expert load, [layers, experts] in a .npy or JSON file, or a snapshot that --save wrote. Run moegs plan --help for usage.")]
    [InlineData("plan", "plan needs LOAD: the expert load, [layers, experts] in a .npy or JSON file, or a snapshot that --save wrote. Options '--replicas' and '--gpus' are required too. Run moegs plan --help for usage.")]
    [InlineData("plan --replicas 16", "plan needs LOAD: the expert load, [layers, experts] in a .npy or JSON file, or a snapshot that --save wrote. Option '--gpus' is required too. Run moegs plan --help for usage.")]
    [InlineData("replay --window abc", "--window abc: give the steps in the window, a whole number from 1 to 2,147,483,647. Run moegs replay --help for usage.")]
    [InlineData("plan --replicas abc", "--replicas abc: give the physical experts per layer, a whole number from 1 to 65,536. Run moegs plan --help for usage.")]
    [InlineData("merge a.json b.json -o", "-o needs a value, given right after it: Where to write the merged snapshot; without it, merge prints the merged report (or its --json) and writes nothing. Run moegs merge --help for usage.")]
    [InlineData("simulate --seed", "--seed needs a value, given right after it: Random seed of the routed tokens (not of a model's hot experts), for repeatable runs. Run moegs simulate --help for usage.")]
    [InlineData("simulate --seed --steps 3", "--seed needs a value, given right after it (--steps was read as its value): Random seed of the routed tokens (not of a model's hot experts), for repeatable runs. Run moegs simulate --help for usage.")]
    [InlineData("report a.json b.json", "Unrecognized command or argument 'b.json'. report reads one SNAPSHOT.json; moegs merge A.json B.json ... combines snapshots and prints their report. Run moegs report --help for usage.")]
    [InlineData("plan a.npy b.npy --replicas 8 --gpus 2", "Unrecognized command or argument 'b.npy'. plan reads one LOAD. Run moegs plan --help for usage.")]
    [InlineData("replay a.npy b.npy", "Unrecognized command or argument 'b.npy'. replay reads one FILE. Run moegs replay --help for usage.")]
    [InlineData("plan a.npy --replicas 8 16 --gpus 2", "Unrecognized command or argument '16'. Run moegs plan --help for usage.")]
    [InlineData("simulate --seed -n 3 --experts", "--experts needs a value, given right after it: Experts (E), 1 to 4,096. Run moegs simulate --help for usage.")]
    public void AParseErrorIsOneLineNamingWhatWasWrongAndWhereHelpIs(string command, string message)
    {
        var (code, _, error) = Run(command.Split(' '));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal(message, error.Trim());
    }

    /// <summary>
    /// A mistyped option or command names the one it most likely meant, on the same line: a letter
    /// dropped, doubled or swapped, or the start of a name; a word near none, or near two alike, names none. An
    /// option's own name after <c>--</c>, where every word is an input, is not suggested as itself.
    /// </summary>
    [Theory]
    [InlineData("simulate --layer 4", "Unrecognized command or argument '--layer'. Did you mean --layers? Run moegs simulate --help for usage.")]
    [InlineData("simulate --exprets 8", "Unrecognized command or argument '--exprets'. Did you mean --experts? Run moegs simulate --help for usage.")]
    [InlineData("simulat", "Unrecognized command or argument 'simulat'. Did you mean simulate? Run moegs --help for usage.")]
    [InlineData("simulate --top 2", "Unrecognized command or argument '--top'. Did you mean --top-k? Run moegs simulate --help for usage.")]
    [InlineData("simulate --metrics 9", "Unrecognized command or argument '--metrics'. Run moegs simulate --help for usage.")]
    [InlineData("simulate --zzzz", "Unrecognized command or argument '--zzzz'. Run moegs simulate --help for usage.")]
    [InlineData("simulate --exprts=16", "Unrecognized command or argument '--exprts=16'. Did you mean --experts? Run moegs simulate --help for usage.")]
    [InlineData("simulate --hepl", "Unrecognized command or argument '--hepl'. Did you mean --help? Run moegs simulate --help for usage.")]
    [InlineData("replay trace.npy -- --experts", "Unrecognized command or argument '--experts'. Words after -- are inputs; put --experts before it. Run moegs replay --help for usage.")]
    public void AMistypedNameSuggestsTheNearestOne(string command, string message)
    {
        var (code, _, error) = Run(command.Split(' '));
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Equal(message, error.Trim());
    }

    /// <summary>
    /// A long option typed with one dash is named with the option it meant, not by the value it pushed out of place
    /// ("Unrecognized command or argument '8'"); a short alias with its value joined (-n3) is still an option.
    /// </summary>
    [Theory]
    [InlineData("simulate -experts 8", "-experts: a long option takes two dashes. Did you mean --experts? Run moegs simulate --help for usage.")]
    [InlineData("simulate --steps 1 -top-k=2", "-top-k=2: a long option takes two dashes. Did you mean --top-k? Run moegs simulate --help for usage.")]
    [InlineData("simulate -exprets 8", "-exprets: a long option takes two dashes. Did you mean --experts? Run moegs simulate --help for usage.")]
    [InlineData("plan load.npy -replicas 16", "-replicas: a long option takes two dashes. Did you mean --replicas? Run moegs plan --help for usage.")]
    public void ALongOptionWithOneDashIsNamed(string command, string message)
    {
        var (code, output, error) = Run(command.Split(' '));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Equal(message, error.Trim());
    }

    /// <summary>
    /// An option of one value given twice or more is named by its spellings with its values, not as one option given two
    /// values ("Option '--steps' expects a single argument but 2 were provided"), and nothing runs; so is one given twice
    /// with one value, which the parser took as that value (<c>--steps 2 --steps</c> ran 2 batches, <c>--json
    /// --json=false</c> printed text). A value with a blank is quoted.
    /// </summary>
    [Theory]
    [InlineData("simulate --steps 2 --steps 3", "--steps (-n) is given twice (2 and 3): give it once. Run moegs simulate --help for usage.")]
    [InlineData("simulate --steps 2 --save a.json -n 3 --steps=4", "--steps (-n) is given 3 times (2, 3 and 4): give it once. Run moegs simulate --help for usage.")]
    [InlineData("plan load.npy --replicas 16 --gpus 4 --replicas 16", "--replicas is given twice (16 and 16): give it once. Run moegs plan --help for usage.")]
    [InlineData("merge a.json b.json -o x.json --output y.json", "--output (-o) is given twice (x.json and y.json): give it once. Run moegs merge --help for usage.")]
    [InlineData("simulate --steps 2 --steps", "--steps (-n) is given twice: give it once. Run moegs simulate --help for usage.")]
    [InlineData("simulate --json --json=false", "--json is given twice: give it once. Run moegs simulate --help for usage.")]
    public void AnOptionGivenTwiceIsNamedWithItsValues(string command, string message)
    {
        var (code, output, error) = Run(command.Split(' '));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.Equal(message, error.Trim());
    }

    /// <summary>A value with a blank, given twice, is quoted; a flag given twice without a value is no error (the file is the command's problem).</summary>
    [Fact]
    public void ARepeatedValueIsQuotedAndARepeatedFlagIsNoError()
    {
        var (code, _, error) = Run(["simulate", "--steps", "2, 3", "--steps", "4"]);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith("--steps (-n) is given twice ('2, 3' and 4): give it once.", error.Trim(), StringComparison.Ordinal);

        var (flag, _, flagError) = Run(["report", "no-such-snapshot.json", "--json", "--json"]);
        Assert.Equal(ExitCodes.BadInput, flag);
        Assert.DoesNotContain("given twice", flagError, StringComparison.Ordinal);
    }

    /// <summary>A value that is empty or holds a blank is quoted, so that the blank the parser refused can be seen.</summary>
    [Theory]
    [InlineData("--experts", " 5", "--experts ' 5': give the number of experts, a whole number from 1 to 4,096.")]
    [InlineData("--report-interval", "", "--report-interval '': ")]
    [InlineData("--metrics-host", " ", "--metrics-host ' ': ")]
    [InlineData("--experts", "x", "--experts x: give the number of experts")]
    public void AValueWithABlankIsQuoted(string option, string value, string expected)
    {
        var (code, _, error) = Run(["simulate", "--steps", "1", option, value, "--metrics-port", "9"]);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith(expected, error.Trim());
    }

    /// <summary>No output overwrites an input or another output: refused before anything runs, the files left as they were.</summary>
    [Theory]
    [InlineData("replay IN --layout steps,tokens,k --save IN", "--save IN: is a file this command reads; give another name.")]
    [InlineData("replay IN --layout steps,tokens,k --save -", "--save -: moegs does not write standard output by this name; leave the option out (--json prints on standard output), or give a file name (./- for a file named -).")]
    [InlineData("replay IN --layout steps,tokens,k --save OUT.npy", "--save OUT.npy: a snapshot is written as JSON, which a .npy name would misname; give a name ending in .json.")]
    [InlineData("replay IN --layout steps,tokens,k --plot OUT.png --save OUT.png", "--save OUT.png: --plot writes that file too; give another name.")]
    [InlineData("replay IN --layout steps,tokens,k --window-load IN", "--window-load IN: is a file this command reads; give another name.")]
    [InlineData("merge SNAP SNAP -o SNAP", "--output SNAP: is a file this command reads; give another name.")]
    [InlineData("report SNAP --plot SNAP", "--plot SNAP: ")]
    [InlineData("simulate --steps 1 --plot OUT.png --save OUT.png", "--save OUT.png: --plot writes that file too; give another name.")]
    public void NoOutputOverwritesAnInputOrAnotherOutput(string arguments, string expected)
    {
        var (input, snapshot, output) = WriteInputs();
        string Place(string text) => text.Replace("IN", input, StringComparison.Ordinal).Replace("SNAP", snapshot, StringComparison.Ordinal).Replace("OUT", output, StringComparison.Ordinal);

        AssertRefusedLeavingTheFiles(Place(arguments), Place(expected), input, snapshot, output);
    }

    /// <summary>
    /// The same check through other names of the same file: a link to the input, a linked folder, a
    /// second name of one snapshot given to merge. An output over a link to the input replaces the link, not the input, and is allowed.
    /// </summary>
    [Theory]
    [InlineData("replay @link --layout steps,tokens,k --save @in", "--save @in: is a file this command reads; give another name.")]
    [InlineData("replay @in --layout steps,tokens,k --save @dir/in.ids", "--save @dir/in.ids: is a file this command reads; give another name.")]
    [InlineData("simulate --layers 2 --steps 1 --save @out.json --window-load @dir/out.json", "--window-load @dir/out.json: --save writes that file too; give another name.")]
    [InlineData("merge @snap @dir/snap.json -o @out.json", "@dir/snap.json: the same file as @snap; give each rank's snapshot once.")]
    [InlineData("merge @snap @snap -o @out.json", "@snap: given twice; give each rank's snapshot once.")]
    public void NoOutputOverwritesAnInputThroughALinkAndNoInputCountsTwice(string arguments, string expected)
    {
        var (input, snapshot, output) = WriteInputs();
        var link = Path.Combine(_folder.FullName, "link.ids");
        File.CreateSymbolicLink(link, input);
        var folder = Path.Combine(_folder.FullName, "dir");
        Directory.CreateSymbolicLink(folder, _folder.FullName);
        string Place(string text) => text.Replace("@in", input, StringComparison.Ordinal).Replace("@link", link, StringComparison.Ordinal)
            .Replace("@dir", folder, StringComparison.Ordinal).Replace("@snap", snapshot, StringComparison.Ordinal).Replace("@out", output, StringComparison.Ordinal);

        AssertRefusedLeavingTheFiles(Place(arguments), Place(expected), input, snapshot, output);

        var inputBefore = File.ReadAllBytes(input);
        var (replaced, _, _) = Run("replay", input, "--layout", "steps,tokens,k", "--save", link);
        Assert.Equal(ExitCodes.Ok, replaced);
        Assert.Equal(inputBefore, File.ReadAllBytes(input));
        Assert.Null(new FileInfo(link).LinkTarget);
    }

    /// <summary>
    /// A named pipe (as a device such as /dev/null) as any output is refused before the run: the write
    /// renames a file over the name, which would replace the pipe (as root, /dev/null itself).
    /// </summary>
    [Theory]
    [InlineData("simulate --steps 1 --save @pipe", "--save @pipe")]
    [InlineData("replay @in --layout steps,tokens,k --plot @pipe.png", "--plot @pipe.png")]
    [InlineData("replay @in --layout steps,tokens,k --window-load @pipe.npy", "--window-load @pipe.npy")]
    [InlineData("merge @snap @other -o @pipe", "--output @pipe")]
    public void APipeOrADeviceIsNoOutputFile(string arguments, string option)
    {
        var (input, snapshot, _) = WriteInputs();
        var other = _folder.SaveSnapshot("other.json", experts: 4, firstSlot: 3);
        var pipe = Path.Combine(_folder.FullName, "pipe");
        foreach (var name in new[] { pipe, pipe + ".png", pipe + ".npy" })
        {
            Assert.Equal(0, Mono.Unix.Native.Syscall.mkfifo(name, Mono.Unix.Native.FilePermissions.S_IRUSR | Mono.Unix.Native.FilePermissions.S_IWUSR));
        }

        string Place(string text) => text.Replace("@in", input, StringComparison.Ordinal).Replace("@snap", snapshot, StringComparison.Ordinal)
            .Replace("@other", other, StringComparison.Ordinal).Replace("@pipe", pipe, StringComparison.Ordinal);

        var (code, stdout, error) = Run(Place(arguments).Split(' '));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(stdout);
        Assert.StartsWith($"{Place(option)}: is a named pipe, not a file: the write would replace it with a file; give a file name, or leave the option out to write nothing.", error);
        Assert.Equal(Mono.Unix.FileTypes.Fifo, Mono.Unix.UnixFileSystemInfo.GetFileSystemEntry(Place(option).Split(' ')[1]).FileType);
    }

    /// <summary>
    /// Standard output that fails (a full disk) is named as such, not as the input; the files the
    /// command writes are still written, and the exit code is WriteFailed.
    /// </summary>
    [Theory]
    [InlineData("replay @in --layout steps,tokens,k --save @out.json")]
    [InlineData("replay @in --layout steps,tokens,k --json --save @out.json")]
    [InlineData("merge @snap @other -o @out.json")]
    [InlineData("simulate --steps 2 --save @out.json")]
    public async Task AFullStandardOutputIsNamedAndTheFilesAreStillWritten(string arguments)
    {
        var (input, snapshot, output) = WriteInputs();
        var other = _folder.SaveSnapshot("other.json", experts: 4, firstSlot: 3);
        var args = arguments.Replace("@in", input, StringComparison.Ordinal).Replace("@snap", snapshot, StringComparison.Ordinal)
            .Replace("@other", other, StringComparison.Ordinal).Replace("@out", output, StringComparison.Ordinal).Split(' ');
        using var full = new FullDisk(allowed: 40);
        using var error = new StringWriter();

        var code = await MoegsCommandLine.RunAsync(args, new CliConsole(full, error, ErrorIsTerminal: false));

        Assert.Equal(ExitCodes.WriteFailed, code);
        Assert.EndsWith("moegs: cannot write to standard output (No space left on device): what went there is incomplete; output files, if any, are written as usual.", error.ToString().TrimEnd());
        Assert.DoesNotContain(": No space left", error.ToString());
        Assert.DoesNotContain("unexpected error", error.ToString());
        Assert.True(File.Exists(output + ".json"));
    }

    /// <summary>
    /// A closed standard output (<c>&gt;&amp;-</c>, which .NET reports as "Access to the path is denied" around the
    /// system's "Bad file descriptor") is named as a full one is; a standard error that cannot be written is let be.
    /// Either way the files are written. In-process with writers that fail as .NET's console streams do, and through a
    /// shell that closes the descriptors of a moegs process.
    /// </summary>
    [Fact]
    public async Task AClosedStandardOutputOrErrorStillWritesTheFiles()
    {
        var (input, _, output) = WriteInputs();
        string[] Args(string name) => ["replay", input, "--layout", "steps,tokens,k", "--save", $"{output}-{name}.json"];
        using var error = new StringWriter();

        var closedOut = await MoegsCommandLine.RunAsync(Args("out"), new CliConsole(new ClosedDescriptor(), error, ErrorIsTerminal: false));
        var closedError = await MoegsCommandLine.RunAsync(Args("error"), new CliConsole(new StringWriter(), new ClosedDescriptor(), ErrorIsTerminal: false));

        Assert.Equal(ExitCodes.WriteFailed, closedOut);
        Assert.EndsWith("moegs: cannot write to standard output (Bad file descriptor): what went there is incomplete; output files, if any, are written as usual.", error.ToString().TrimEnd());
        Assert.Equal(ExitCodes.Ok, closedError);
        Assert.True(File.Exists($"{output}-out.json"));
        Assert.True(File.Exists($"{output}-error.json"));

        Assert.SkipUnless(OperatingSystem.IsLinux() && File.Exists("/bin/sh"), "needs /bin/sh to close a process's descriptors");
        string Command(string name) => string.Join(' ', Args(name).Select(a => $"'{a}'"));
        var script = Path.Combine(_folder.FullName, "closed.sh");
        File.WriteAllText(script, $"""
            "$1" "$2" {Command("shell-out")} 2>&1 >&-; echo code $?
            "$1" "$2" {Command("shell-error")} 2>&- >/dev/null; echo code $?
            """);
        var said = ExternalProgram.Run("/bin/sh", $"\"{script}\" \"{DotnetHost()}\" \"{Path.Combine(AppContext.BaseDirectory, "moegs.dll")}\"", out _, (RoutingStats.AcceleratorVariable, "managed"));
        Assert.Contains("moegs: cannot write to standard output (Bad file descriptor)", said);
        Assert.DoesNotContain("unexpected error", said);
        Assert.Contains($"code {ExitCodes.WriteFailed}", said);
        Assert.EndsWith($"code {ExitCodes.Ok}", said.TrimEnd());
        Assert.True(File.Exists($"{output}-shell-out.json"));
        Assert.True(File.Exists($"{output}-shell-error.json"));
    }

    /// <summary>A console stream whose descriptor was closed: .NET throws "Access to the path is denied" around the system's error.</summary>
    private sealed class ClosedDescriptor : StringWriter
    {
        public override void Write(char value) => throw Closed();

        public override void Write(string? value) => throw Closed();

        public override void Write(char[] buffer, int index, int count) => throw Closed();

        private static UnauthorizedAccessException Closed() => new("Access to the path is denied.", new IOException("Bad file descriptor"));
    }

    /// <summary>A writer that takes <c>allowed</c> characters, then fails as a full disk does.</summary>
    private sealed class FullDisk(int allowed) : StringWriter
    {
        private int _left = allowed;

        public override void Write(char value) => Take(1);

        public override void Write(string? value) => Take(value?.Length ?? 0);

        public override void Write(char[] buffer, int index, int count) => Take(count);

        private void Take(int count)
        {
            _left -= count;
            if (_left < 0)
            {
                throw new IOException("No space left on device");
            }
        }
    }

    /// <summary>Output names the file system cannot look up (too long, a file as a folder, a loop of links) are one line before the run, not a crash.</summary>
    [Theory]
    [InlineData("--plot", "@long.png", "the file name is 260 bytes long; file systems take at most 255.")]
    [InlineData("--save", "@file/x.json", "@file is not a folder.")]
    [InlineData("--plot", "@loop/x.png", "@loop is not a folder.")]
    public void AnOutputNameTheFileSystemCannotLookUpIsOneLine(string option, string name, string expected)
    {
        var file = Path.Combine(_folder.FullName, "file");
        File.WriteAllText(file, "x");
        var loop = Path.Combine(_folder.FullName, "loop");
        File.CreateSymbolicLink(loop, loop);
        string Place(string text) => text.Replace("@long", Path.Combine(_folder.FullName, new string('a', 256)), StringComparison.Ordinal)
            .Replace("@file", file, StringComparison.Ordinal).Replace("@loop", loop, StringComparison.Ordinal);

        var (code, stdout, error) = Run("simulate", "--steps", "1", "--tokens", "2", option, Place(name));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(stdout);
        Assert.Equal($"{option} {Place(name)}: {Place(expected)} Run moegs simulate --help for usage.", error.Trim());
    }

    /// <summary>A link to a pipe is refused as the pipe is, and the link is left as it was.</summary>
    [Fact]
    public void ALinkToAPipeIsNoOutputFile()
    {
        var pipe = Path.Combine(_folder.FullName, "pipe");
        Assert.Equal(0, Mono.Unix.Native.Syscall.mkfifo(pipe, Mono.Unix.Native.FilePermissions.S_IRUSR | Mono.Unix.Native.FilePermissions.S_IWUSR));
        var link = Path.Combine(_folder.FullName, "link.json");
        File.CreateSymbolicLink(link, pipe);

        var (code, stdout, error) = Run("simulate", "--steps", "1", "--tokens", "2", "--save", link);

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(stdout);
        Assert.StartsWith($"--save {link}: is a link to a named pipe, not a file", error);
        Assert.Equal(Mono.Unix.FileTypes.SymbolicLink, Mono.Unix.UnixFileSystemInfo.GetFileSystemEntry(link).FileType);
    }

    /// <summary>
    /// Names in /dev and /proc are the system's (/dev/stdout is a link, which the rename replaced as
    /// root): refused by the check alone, which this test calls without running a command, so that a
    /// check that failed could not write there.
    /// </summary>
    [Theory]
    [InlineData("/dev/stdout", "is in /dev, the system's own names (devices, the links of /dev/stdout), not a file a write may replace")]
    [InlineData("/dev/null", "is in /dev, ")]
    [InlineData("/proc/self/fd/1", "is in /proc, the system's own names (processes, the kernel's settings), not a file a write may replace")]
    public void TheSystemsNamesAreNoOutputFiles(string path, string expected) =>
        Assert.StartsWith(expected, OutputPath.Problem(path));

    /// <summary>A name .NET read from bytes that are not UTF-8 would be written as U+FFFD itself: another name than the one given.</summary>
    [Fact]
    public void ANameWithBytesThatAreNotUtf8IsNoOutputFile() =>
        Assert.Equal(
            "the name holds \uFFFD, which may stand for bytes that are not UTF-8 (moegs reads names as UTF-8, so the file would get another name); give a name without it.",
            OutputPath.Problem(Path.Combine(Path.GetTempPath(), "out\uFFFD.json")));

    [Fact]
    public void AFileInDevShmIsAnOutputFile()
    {
        Assert.SkipUnless(Directory.Exists("/dev/shm"), "this machine has no /dev/shm");
        Assert.Null(OutputPath.Problem($"/dev/shm/moegs-{Guid.NewGuid():N}.json"));
    }

    /// <summary>A trace (a name that says no format, which replay reads by its first bytes, as an output may be named), a snapshot in the test's folder, and where an output would go (no extension).</summary>
    private (string Input, string Snapshot, string Output) WriteInputs() => (
        NpyFile.Write(Path.Combine(_folder.FullName, "in.ids"), "<i4", "2, 1, 2", [.. new[] { 0, 1, 1, 0 }.SelectMany(BitConverter.GetBytes)]),
        _folder.SaveSnapshot("snap.json", experts: 4),
        Path.Combine(_folder.FullName, "out"));

    /// <summary>Runs <paramref name="arguments"/>: a usage error starting with <paramref name="expected"/>, the inputs as they were, no output written.</summary>
    private static void AssertRefusedLeavingTheFiles(string arguments, string expected, string input, string snapshot, string output)
    {
        var (inputBefore, snapshotBefore) = (File.ReadAllBytes(input), File.ReadAllBytes(snapshot));

        var (code, stdout, error) = Run(arguments.Split(' '));

        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(stdout);
        Assert.StartsWith(expected, error);
        Assert.Equal(inputBefore, File.ReadAllBytes(input));
        Assert.Equal(snapshotBefore, File.ReadAllBytes(snapshot));
        Assert.False(File.Exists(output + ".json") || File.Exists(output + ".png"));
    }

    /// <summary>Every file argument and option of every command: an empty name is a one-line usage error naming it, never an unhandled exception.</summary>
    [Theory]
    [InlineData("FILE", "replay", "")]
    [InlineData("--save", "replay", "ids.npy", "--save", "")]
    [InlineData("--plot", "replay", "ids.npy", "--plot", " ")]
    [InlineData("--window-load", "replay", "ids.npy", "--window-load", "")]
    [InlineData("--save", "simulate", "--save", "")]
    [InlineData("--plot", "simulate", "--plot", "")]
    [InlineData("SNAPSHOT.json", "report", "")]
    [InlineData("--plot", "report", "a.json", "--plot", "")]
    [InlineData("SNAPSHOTS", "merge", "a.json", "", "-o", "m.json")]
    [InlineData("--output", "merge", "a.json", "b.json", "-o", "")]
    [InlineData("LOAD", "plan", "", "--replicas", "8", "--gpus", "2")]
    public void AnEmptyFileNameIsAUsageErrorNamingItsArgument(string name, params string[] arguments)
    {
        var (code, output, error) = Run(arguments);
        Assert.Equal(ExitCodes.Usage, code);
        Assert.Empty(output);
        Assert.StartsWith($"{name} '", error);
        Assert.Contains("the file name is empty", error);
        Assert.Single(error.TrimEnd().Split('\n'));
    }
}
