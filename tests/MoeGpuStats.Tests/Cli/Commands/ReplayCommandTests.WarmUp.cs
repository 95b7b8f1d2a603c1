using MoeGpuStats.Cli;
using MoeGpuStats.Serialization;
using static MoeGpuStats.Tests.Support.Moegs;

namespace MoeGpuStats.Tests.Cli.Commands;

/// <summary>
/// Warm-up passes: steps whose tokens all route alike, beyond what a router does by chance, are named; steps of alike
/// tokens that chance explains are not.
/// </summary>
public sealed partial class ReplayCommandTests
{
    /// <summary>
    /// Warm-up passes route every token alike; replay says so and --skip-steps leaves them out. Three tokens on the
    /// same four of 64 experts in order: 2 × log10(64 · 63 · 62 · 61) = 14.4 decades against a uniform router.
    /// </summary>
    [Fact]
    public void WarmUpStepsAreNamedAndCanBeLeftOut()
    {
        int[] real = [4, 5, 6, 7, 8, 9, 10, 11, 4, 9, 12, 13];
        int[] ids = [.. Alike(3, 0, 1, 2, 3), .. Alike(3, 0, 1, 2, 3), .. real];
        var npy = WriteInt32("warm.npy", "3, 3, 4", ids);
        var saved = Path.Combine(_folder.FullName, "warm.json");

        var (all, _, warned) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "64", "--save", saved);
        Assert.Equal(ExitCodes.Ok, all);
        Assert.Contains("warning: the first 2 steps routed every token to the same experts, as warm-up passes of synthetic tokens do; --skip-steps 2 leaves them out.", warned);

        var (code, output, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "64", "--skip-steps", "2", "--save", saved);
        Assert.Equal(ExitCodes.Ok, code);
        Assert.DoesNotContain("warning", error);
        Assert.Contains("1 step of 3 token rows (the first 2 left out)", output);
        using var stats = RoutingStatsFile.Load(saved);
        Assert.Equal(Enumerable.Range(0, 64).Select(e => (ulong)real.Count(id => id == e)), stats.ExpertTokenCounts);

        var (tooMany, _, refused) = Run("replay", npy, "--layout", "steps,tokens,k", "--skip-steps", "3");
        Assert.Equal(ExitCodes.Usage, tooMany);
        Assert.Equal($"--skip-steps 3: {npy} has 3 steps; leave out at most 2, so that one is replayed.", refused.Trim());
    }

    /// <summary>
    /// Steps are numbered as the file numbers them after --skip-steps: warm-up steps that still open the replay are
    /// named with the --skip-steps that leaves them out, counted from the file's start; a replay of warm-up steps
    /// alone says it may hold no real traffic; warm-up steps among steps of padding alone, before the first step of
    /// other tokens, are named with the --skip-steps that leaves both out.
    /// </summary>
    [Fact]
    public void WarmUpStepsAreNamedInTheFilesStepsAfterSkippedOnes()
    {
        int[] real = [4, 5, 6, 7, 8, 9, 10, 11, 4, 9, 12, 13];
        int[] warm = Alike(3, 0, 1, 2, 3);
        var npy = WriteInt32("skipped.npy", "4, 3, 4", [.. warm, .. warm, .. warm, .. real]);

        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "64", "--skip-steps", "1");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: the first 2 steps after the 1 left out routed every token to the same experts, as warm-up passes of synthetic tokens do; --skip-steps 3 leaves them out.", error);

        var allWarm = WriteInt32("allwarm.npy", "3, 3, 4", [.. warm, .. warm, .. warm]);
        (code, _, error) = Run("replay", allWarm, "--layout", "steps,tokens,k", "--experts", "64", "--skip-steps", "1");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: every step routed every token to the same experts, as warm-up passes of synthetic tokens do: this trace may hold no real traffic.", error);
        Assert.DoesNotContain("--skip-steps", error);

        int[] padding = [.. Enumerable.Repeat(-1, 12)];
        var dummyFirst = WriteInt32("dummyfirst.npy", "4, 3, 4", [.. padding, .. warm, .. warm, .. real]);
        (code, _, error) = Run("replay", dummyFirst, "--layout", "steps,tokens,k", "--experts", "64");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: 2 steps (first 1, last 2) routed every token to the same experts, as warm-up passes of synthetic tokens do, before the first step of other tokens (step 3); --skip-steps 3 leaves them out.", error);

        var noTraffic = WriteInt32("notraffic.npy", "3, 3, 4", [.. padding, .. warm, .. padding]);
        (code, _, error) = Run("replay", noTraffic, "--layout", "steps,tokens,k", "--experts", "64");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: every step routed every token to the same experts (1) or held padding alone (2), as warm-up and idle passes do: this trace may hold no real traffic.", error);

        // Padding saved unsigned (255 in uint8) names no expert: a step of it is no traffic before the warm-up either.
        var unsigned = NpyFile.Write(Path.Combine(_folder.FullName, "u8warm.npy"), "|u1", "3, 3, 4", [.. Enumerable.Repeat((byte)255, 12), .. warm.Select(id => (byte)id), .. real.Select(id => (byte)id)]);
        (code, _, error) = Run("replay", unsigned, "--layout", "steps,tokens,k");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: 1 step (first 1, last 1) routed every token to the same experts, as warm-up passes of synthetic tokens do, before the first step of other tokens (step 2); --skip-steps 2 leaves them out.", error);
    }

    /// <summary>
    /// A warm-up pass padded to a captured size (its alike tokens, then rows of -1) is named as warm-up: padding rows
    /// are not tokens. A step of one real token among padding is warm-up only where that token names one expert k times.
    /// </summary>
    [Fact]
    public void PaddedWarmUpStepsAreNamed()
    {
        int[] padding = [-1, -1, -1, -1];
        int[] ids =
        [
            .. Alike(3, 0, 1, 2, 3), .. padding,
            0, 1, 2, 3, 4, 5, 6, 7, .. padding, .. padding,
            5, 5, 5, 5, .. padding, .. padding, .. padding,
            3, 1, 2, 0, .. padding, .. padding, .. padding,
        ];
        var npy = WriteInt32("padwarm.npy", "4, 4, 4", ids);

        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "64");

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: 2 steps (first 0, last 2) routed every token to the same experts, as warm-up passes of synthetic tokens do; their counts are in the report.", error);
    }

    /// <summary>
    /// Alike tokens that a uniform router gives once in 10^9 steps or more often are chance, not warm-up: top-1 of 4
    /// experts, 16 tokens on one expert are 15 × log10(4) = 9.03 decades (named), 15 tokens 8.4 (not); top-1 of 10, 10
    /// tokens are exactly 9 (not). A token's empty slots pick no expert: two tokens of one expert and three -1 slots
    /// among 256 experts meet once in 256 steps (not).
    /// </summary>
    [Fact]
    public void AlikeTokensAreWarmUpOnlyBeyondChance()
    {
        int[] mixed = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3];
        int[] ids = [.. mixed, .. Enumerable.Repeat(2, 15), -1, .. Enumerable.Repeat(1, 16)];
        var npy = WriteInt32("chance.npy", "3, 16, 1", ids);

        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "4");

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: 1 step (first 2, last 2) routed every token to the same experts", error);

        var exactly = WriteInt32("nine.npy", "2, 10, 1", [.. Enumerable.Repeat(3, 10), 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        (code, _, error) = Run("replay", exactly, "--layout", "steps,tokens,k", "--experts", "10");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.DoesNotContain("same experts", error);

        var empty = WriteInt32("emptyslots.npy", "2, 2, 4", [5, -1, -1, -1, 5, -1, -1, -1, 1, 2, 3, 4, 5, 6, 7, 8]);
        (code, _, error) = Run("replay", empty, "--layout", "steps,tokens,k", "--experts", "256");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.DoesNotContain("same experts", error);
    }

    /// <summary>
    /// A uniform router's small decode batches (two tokens, top-2 of 8 experts) meet on the same experts in about one
    /// step in 56, which is chance: such a trace gets no warm-up warning. The same two alike tokens in every layer of a
    /// 32-layer model are 32 × log10(56) = 56 decades: named.
    /// </summary>
    [Fact]
    public void SmallBatchesAlikeByChanceAreNotWarmUpButAWholeModelOfThemIs()
    {
        const int steps = 2_000, tokens = 2, topK = 2, experts = 8, layers = 32;
        var random = new Random(7);
        var ids = new int[steps * tokens * topK];
        for (var row = 0; row < steps * tokens; row++)
        {
            ids[row * topK] = random.Next(experts);
            ids[(row * topK) + 1] = (ids[row * topK] + 1 + random.Next(experts - 1)) % experts;
        }

        var alike = Enumerable.Range(0, steps).Count(s => ids.AsSpan(s * 4, 2).SequenceEqual(ids.AsSpan((s * 4) + 2, 2)));
        Assert.InRange(alike, 10, 80);
        var npy = WriteInt32("decode.npy", $"{steps}, {tokens}, {topK}", ids);
        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", $"{experts}");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.DoesNotContain("same experts", error);

        int[] model = [.. Enumerable.Range(0, layers).SelectMany(_ => Alike(tokens, 3, 5)), .. Enumerable.Range(0, layers * tokens * topK).Select(i => i % experts)];
        var layered = WriteInt32("alikemodel.npy", $"2, {layers}, {tokens}, {topK}", model);
        (code, _, error) = Run("replay", layered, "--layout", "steps,layers,tokens,k", "--experts", $"{experts}");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: the first step routed every token to the same experts, as warm-up passes of synthetic tokens do; --skip-steps 1 leaves them out.", error);
    }

    /// <summary>
    /// A JSON-lines trace's passes are numbered by position, which their own step fields need not match: a warning names
    /// the line each pass starts on as well.
    /// </summary>
    [Fact]
    public void AJsonLinesTracesWarningsNameTheLinesOfItsPasses()
    {
        var path = Path.Combine(_folder.FullName, "warm.jsonl");
        File.WriteAllLines(path,
        [
            """{"step": 100, "topk_ids": [[0, 1], [2, 3], [1, 2]]}""",
            """{"step": 101, "topk_ids": [[5, 5], [5, 5], [5, 5]]}""",
            """{"step": 102, "topk_ids": [[0, 3], [2, 1], [4, 2]]}""",
        ]);

        var (code, _, error) = Run("replay", path, "--experts", "8");

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: 1 step (first 1 at line 2, last 1 at line 2) routed every token to the same experts, as warm-up passes of synthetic tokens do; their counts are in the report.", error);
    }

    /// <summary>Warm-up tokens of all zeros repeat an expert: the warm-up warning says what they are, not a warning about the layout.</summary>
    [Fact]
    public void WarmUpTokensThatRepeatAnExpertAreNotBlamedOnTheLayout()
    {
        int[] ids = [0, 0, 0, 0, 0, 0, 2, 3, 1, 2, 3, 0, 3, 3, 1, 2, 0, 1];
        var npy = WriteInt32("zeros.npy", "3, 3, 2", ids);

        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "4");

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: the first step routed every token to the same experts", error);
        Assert.Contains("warning: 1 token (the first in step 2) names one expert twice among its 2 ids", error);
    }

    /// <summary>A warm-up pass of one token of zeros is a warm-up step too; a real token that names one expert twice is still the layout's warning.</summary>
    [Fact]
    public void AOneTokenWarmUpStepIsNamedAsWarmUpNotBlamedOnTheLayout()
    {
        int[] ids = [0, 0, 2, 3, 1, 1, 1, 2];
        var npy = WriteInt32("one.npy", "4, 1, 2", ids);

        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "4");

        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: 2 steps (first 0, last 2) routed every token to the same experts", error);
        Assert.DoesNotContain("twice", error);

        int[] repeated = [0, 1, 2, 2, 2, 3];
        var layered = WriteInt32("layered.npy", "1, 3, 1, 2", repeated);
        var (layeredCode, _, layeredError) = Run("replay", layered, "--layout", "steps,layers,tokens,k", "--experts", "4");
        Assert.Equal(ExitCodes.Ok, layeredCode);
        Assert.DoesNotContain("same experts", layeredError);
        Assert.Contains("warning: 1 token (the first in step 0) names one expert twice among its 2 ids", layeredError);
    }

    [Fact]
    public void ATraceOfOnlyIdenticalStepsIsNamedWithoutSuggestingToSkipThemAll()
    {
        int[] ids = [.. Alike(3, 9, 3, 40, 17), .. Alike(3, 9, 3, 40, 17)];
        var npy = WriteInt32("same.npy", "2, 3, 4", ids);
        var (code, _, error) = Run("replay", npy, "--layout", "steps,tokens,k", "--experts", "64");
        Assert.Equal(ExitCodes.Ok, code);
        Assert.Contains("warning: every step routed every token to the same experts", error);
        Assert.DoesNotContain("--skip-steps", error);

        int[] padded = [-1, -1, -1, -1, 0, 1, 2, 3];
        var pad = WriteInt32("padstep.npy", "2, 2, 2", padded);
        var (padCode, _, padError) = Run("replay", pad, "--layout", "steps,tokens,k", "--experts", "4");
        Assert.Equal(ExitCodes.Ok, padCode);
        Assert.DoesNotContain("same experts", padError);
    }

    /// <summary><paramref name="tokens"/> rows of <paramref name="row"/>: a warm-up pass's alike tokens.</summary>
    private static int[] Alike(int tokens, params int[] row) => [.. Enumerable.Range(0, tokens).SelectMany(_ => row)];
}
