using MoeGpuStats.Cli;
using MoeGpuStats.Cli.Input;
using static MoeGpuStats.Tests.Support.ModelTrace;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary><c>replay --skip-empty-steps</c>: a model's dummy passes left out, as the model's option leaves them; the steps of no token named.</summary>
public sealed partial class ReplayCommandTests
{
    /// <summary>
    /// With the option, a trace's steps of padding alone are left out: the saved model equals a replay of
    /// the other steps alone (its steps, window and load), and a note counts them; without it, each is a step
    /// and the warning names the option.
    /// </summary>
    [Fact]
    public void SkipEmptyStepsLeavesOutAModelsDummyPasses()
    {
        var real = Ids(Steps, Layers, Tokens, seed: 12);
        var stepIds = Layers * Tokens * TopK;
        var mixed = new List<int>();
        for (var s = 0; s < Steps; s++)
        {
            mixed.AddRange(real.AsSpan(s * stepIds, stepIds).ToArray());
            if (s % 2 == 0)
            {
                mixed.AddRange(Enumerable.Repeat(-1, stepIds));
            }
        }

        var dummies = (Steps + 1) / 2;
        var withDummies = WriteInt32("dummies.npy", $"{Steps + dummies}, {Layers}, {Tokens}, {TopK}", [.. mixed]);
        var withoutDummies = WriteInt32("real.npy", $"{Steps}, {Layers}, {Tokens}, {TopK}", real);
        var (skipped, alone, counted) = (Path.Combine(_folder.FullName, "skipped.json"), Path.Combine(_folder.FullName, "alone.json"), Path.Combine(_folder.FullName, "counted.json"));

        var (code, _, error) = Moegs.Run("replay", withDummies, "--experts", $"{Experts}", "--window", "4", "--skip-empty-steps", "--save", skipped);
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"note: {dummies} steps held padding alone (-1), no token (the first is step 1): left out (--skip-empty-steps), in no statistic and in no place of the window.", error);
        Assert.True(Moegs.Run("replay", withoutDummies, "--experts", $"{Experts}", "--window", "4", "--save", alone).Code == ExitCodes.Ok);
        using (var left = SnapshotFile.Load(skipped))
        using (var reference = SnapshotFile.Load(alone))
        {
            Assert.Equal((ulong)Steps, left.Model!.Summary().Steps);
            Assert.Equal(reference.Model!.WindowLoad(), left.Model.WindowLoad());
            Assert.Equal(System.Text.Json.JsonSerializer.Serialize(reference.Model.Summary()), System.Text.Json.JsonSerializer.Serialize(left.Model.Summary()));
            Assert.True(left.Model.Options.SkipEmptySteps);
        }

        var (reportCode, report, reportError) = Moegs.Run("report", skipped);
        Assert.True(reportCode == ExitCodes.Ok, reportError);
        Assert.StartsWith($"report {skipped}: a model of {Layers} layers of {Experts} experts, empty steps left out", report);

        (code, _, error) = Moegs.Run("replay", withDummies, "--experts", $"{Experts}", "--window", "4", "--save", counted);
        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains($"warning: {dummies} steps held padding alone (-1), no token (the first is step 1): each counts as a step with no load", error);
        Assert.Contains("--skip-empty-steps leaves them out.", error);
        using var all = SnapshotFile.Load(counted);
        Assert.Equal((ulong)(Steps + dummies), all.Model!.Summary().Steps);
        Assert.DoesNotContain("empty steps", Moegs.Run("report", counted).Out);
    }

    /// <summary>
    /// The steps the model leaves out are not timed (each is a check, not a record: timed, they would lower the
    /// mean step), nor the first step recorded, which loads the engine, though a step left out comes first; the
    /// report says so, and the JSON counts them apart from the steps. Without the option each is a step, and timed but the first.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheStepsLeftOutAreNotTimed(bool skipEmptySteps)
    {
        var real = Ids(Steps, Layers, Tokens, seed: 5);
        var stepIds = Layers * Tokens * TopK;
        var mixed = new List<int>();
        for (var s = 0; s < Steps; s++)
        {
            mixed.AddRange(Enumerable.Repeat(-1, stepIds));
            mixed.AddRange(real.AsSpan(s * stepIds, stepIds).ToArray());
        }

        var path = WriteInt32("timed.npy", $"{2 * Steps}, {Layers}, {Tokens}, {TopK}", [.. mixed]);
        string[] options = skipEmptySteps ? ["--skip-empty-steps"] : [];

        var (code, output, error) = Moegs.Run(["replay", path, "--experts", $"{Experts}", "--json", .. options]);
        var (textCode, text, _) = Moegs.Run(["replay", path, "--experts", $"{Experts}", .. options]);

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Equal(ExitCodes.Ok, textCode);
        using var json = System.Text.Json.JsonDocument.Parse(output);
        Assert.Equal(skipEmptySteps ? Steps - 1 : (2 * Steps) - 1, json.RootElement.GetProperty("step_time").GetProperty("timed_steps").GetInt32());
        Assert.Equal(skipEmptySteps, text.Contains("nor the steps of padding alone the model leaves out", StringComparison.Ordinal));
        Assert.Equal(skipEmptySteps ? Steps : (int?)null, json.RootElement.TryGetProperty("empty_steps_left_out", out var leftOut) ? leftOut.GetInt32() : null);
        Assert.Equal(skipEmptySteps ? Steps : 2 * Steps, json.RootElement.GetProperty("steps").GetInt32());
    }

    /// <summary>A step of padding after a larger step is found whatever the larger step left in the ids' buffer past it.</summary>
    [Fact]
    public void AStepOfPaddingAfterALargerStepIsNamed()
    {
        var path = Path.Combine(_folder.FullName, "shrinking.jsonl");
        File.WriteAllLines(path,
        [
            """{"layer": 0, "topk_ids": [[0, 1], [2, 3], [1, 2]]}""",
            """{"layer": 1, "topk_ids": [[0, 1], [2, 3], [1, 2]]}""",
            """{"layer": 0, "topk_ids": [[-1, -1]]}""",
            """{"layer": 1, "topk_ids": [[-1, -1]]}""",
        ]);

        var (code, _, error) = Moegs.Run("replay", path, "--experts", "4", "--skip-empty-steps", "--json");

        Assert.True(code == ExitCodes.Ok, error);
        Assert.Contains("note: 1 step held padding alone (-1), no token (the first is step 1 at line 3): left out (--skip-empty-steps)", error);
    }

    /// <summary>
    /// A replay stopped by SIGINT counts the steps it left out among those it went through, not among the file's: its
    /// JSON's steps and empty_steps_left_out add up to the steps standard error says were replayed (4 million steps of
    /// one token, every other one padding, take far longer than the first periodic report).
    /// </summary>
    [Fact]
    public async Task AnInterruptedReplayCountsTheStepsLeftOutOfThoseItReplayed()
    {
        const int FileSteps = 4_000_000;
        var npy = NpyFile.Write(Path.Combine(_folder.FullName, "long.npy"), "|i1", $"{FileSteps}, 1, 1, 1", [.. Enumerable.Range(0, FileSteps).Select(step => step % 2 == 0 ? (byte)0xFF : (byte)0)]);
        using var moegs = Moegs.StartSignallable("replay", npy, "--experts", "2", "--skip-empty-steps", "--json", "--report-interval", "1");
        using var cleanup = new Moegs.ProcessCleanup(moegs);
        var output = moegs.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);

        // The first periodic report says the loop runs, with its signal handlers in place.
        var first = await moegs.StandardError.ReadLineAsync(TestContext.Current.CancellationToken).AsTask().WaitAsync(Patience.GoAhead, TestContext.Current.CancellationToken);
        Assert.NotNull(first);
        var errors = moegs.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken);
        await Moegs.Interrupt(moegs);

        await moegs.WaitForExitAsync(TestContext.Current.CancellationToken).WaitAsync(Patience.GoAhead, TestContext.Current.CancellationToken);
        Assert.Equal(ExitCodes.Interrupted, moegs.ExitCode);
        var stopped = System.Text.RegularExpressions.Regex.Match(await errors, @"(?m)^interrupted after ([0-9,]+) of 4,000,000 steps: ");
        Assert.True(stopped.Success, await errors);
        var done = long.Parse(stopped.Groups[1].Value, System.Globalization.NumberStyles.AllowThousands, System.Globalization.CultureInfo.InvariantCulture);
        using var report = System.Text.Json.JsonDocument.Parse(await output);
        var (steps, leftOut) = (report.RootElement.GetProperty("steps").GetInt64(), report.RootElement.GetProperty("empty_steps_left_out").GetInt64());
        Assert.InRange(leftOut, 1, done - 1);
        Assert.Equal(done, steps + leftOut);
    }

    [Fact]
    public void SkipEmptyStepsIsRefusedForOneLayer()
    {
        var npy = WriteInt32("one-layer.npy", $"{Tokens}, {TopK}", Ids(1, 1, Tokens, seed: 3));

        var (code, _, error) = Moegs.Run("replay", npy, "--skip-empty-steps");

        Assert.Equal(ExitCodes.Usage, code);
        Assert.StartsWith("--skip-empty-steps: leaving steps out of the window is a model's; ", error.Trim());
        Assert.Single(error.Trim().Split('\n'));
    }
}
