using System.CommandLine;
using System.Globalization;
using MoeGpuStats.Bench;

namespace MoeGpuStats.Tests.Bench;

/// <summary>
/// The bench's quick modes parse their command lines with System.CommandLine: defaults where an option is absent, the
/// value where it is given, and one line naming the option, the value and what is allowed where it does not parse,
/// before the mode runs.
/// </summary>
public sealed class QuickModeTests
{
    public static TheoryData<string> Flags => [.. QuickModes.All.Select(mode => mode.Flag)];

    [Theory]
    [MemberData(nameof(Flags))]
    public void EveryModesFlagAloneParsesToItsDefaults(string flag)
    {
        Assert.Empty(QuickModes.All.Single(mode => mode.Flag == flag).Parse([flag]).Errors);
    }

    [Fact]
    public void AbsentOptionsTakeTheirDefaultsAndGivenOnesTheirValues()
    {
        var defaults = ModelStepsRun.Mode.Parse(["--model-steps"]);
        Assert.Equal(3, defaults.GetValue<int>("--steps"));
        Assert.Equal([new ModelShape(58, 256, 8, 256), new ModelShape(58, 256, 8, 16384)], defaults.GetRequiredValue<ModelShape[]>("--model-shapes"));

        var given = ModelStepsRun.Mode.Parse(["--model-steps", "--steps", "7", "--model-shapes", "1x8x1x1"]);
        Assert.Equal(7, given.GetValue<int>("--steps"));
        Assert.Equal([new ModelShape(1, 8, 1, 1)], given.GetRequiredValue<ModelShape[]>("--model-shapes"));

        Assert.Equal([32768L, 1048576, 16777216, 134217728], DeviceCheck.Mode.Parse(["--device-check"]).GetRequiredValue<long[]>("--sizes"));
        Assert.Equal([8L, Array.MaxLength], DeviceCheck.Mode.Parse(["--device-check", "--sizes", "8, 2147483591"]).GetRequiredValue<long[]>("--sizes"));
        Assert.Equal(256, SeedWorkload.Mode.Parse(["--seed-workload"]).GetValue<int>("--seed-workload"));
        Assert.Equal(64, SeedWorkload.Mode.Parse(["--seed-workload", "64"]).GetValue<int>("--seed-workload"));
        Assert.Equal("ptx", EmitPtx.Mode.Parse(["--emit-ptx"]).GetValue<string>("--emit-ptx"));
        Assert.Equal("out/ptx", EmitPtx.Mode.Parse(["--emit-ptx", "out/ptx"]).GetValue<string>("--emit-ptx"));
        Assert.Equal("records", ModelStepProcesses.Mode.Parse(["--model-step-processes", "--model-step-child", "records"]).GetValue<string>("--model-step-child"));
    }

    [Theory]
    [InlineData("--model-steps --steps abc", "--steps abc: give the steps each shape records, a whole number from 1.")]
    [InlineData("--model-steps --steps 0", "--steps 0: give the steps each shape records, a whole number from 1.")]
    [InlineData("--model-steps --steps 2.5", "--steps 2.5: give the steps each shape records, a whole number from 1.")]
    [InlineData("--model-steps --steps 99999999999", "--steps 99999999999: give the steps each shape records, a whole number from 1.")]
    [InlineData("--model-steps --steps", "--steps needs a value, given right after it.")]
    [InlineData("--model-steps --steps --model-shapes 1x8x1x1", "--steps needs a value, given right after it (--model-shapes was read as its value).")]
    [InlineData("--model-steps --setps 5", "Unrecognized command or argument '--setps'.")]
    [InlineData("--model-check --model-shapes 58x256x8", "--model-shapes: A model shape is LxExkxT with positive whole numbers (58x256x8x256); got '58x256x8'.")]
    [InlineData("--model-check --model-shapes 58x5000x8x1", "--model-shapes: Model shape '58x5000x8x1' is out of range: L is 1 to 1,024, E 1 to 4,096, L × E at most 2,147,483 (a window of 1,000 steps), and L × k × T at most 2,147,483,591.")]
    [InlineData("--model-steps --model-shapes 1x8x1x1 --model-shapes 2x8x1x1", "Option '--model-shapes' expects a single argument but 2 were provided.")]
    [InlineData("--model-steps --steps 1 --steps 2", "Option '--steps' expects a single argument but 2 were provided.")]
    [InlineData("--device-check --experts 4097", "--experts 4097: give the experts each record counts, a whole number from 1 to 4,096.")]
    [InlineData("--device-check --sizes 32768,1e6", "--sizes 32768,1e6: '1e6' is not a whole number from 8 to 2,147,483,591; give the ids of each record, comma-separated.")]
    [InlineData("--device-check --sizes 4", "--sizes 4: '4' is not a whole number from 8 to 2,147,483,591; give the ids of each record, comma-separated.")]
    [InlineData("--device-check --sizes ,", "--sizes ,: give the ids of each record, comma-separated, each from 8 to 2,147,483,591.")]
    [InlineData("--device-check --json --experts 8", "--json needs a value, given right after it (--experts was read as its value).")]
    [InlineData("--model-step-processes --pairs 0", "--pairs 0: give the pairs of processes per shape, a whole number from 1.")]
    [InlineData("--model-step-processes --model-step-child foo", "--model-step-child foo: give one of records, step.")]
    [InlineData("--seed-workload sixty", "--seed-workload sixty: give the experts of the workload, a whole number from 1 to 1,048,576.")]
    [InlineData("--emit-ptx --json", "--emit-ptx --json: give the folder to write the PTX into; --json is no option of this mode, and a path here cannot start with '-'.")]
    [InlineData("--model-check --json ", "--json '': give the file to write the tables to.")]
    [InlineData("--model-probe --out -o", "--out -o: give the folder for the OpenCL C; -o is no option of this mode, and a path here cannot start with '-'.")]
    public void AMalformedCommandLineIsOneLineAndExitCode2BeforeTheModeRuns(string arguments, string expected)
    {
        var args = arguments.Split(' ');
        using var error = new StringWriter(CultureInfo.InvariantCulture);

        Assert.Equal(2, QuickModes.Run(args, error));
        Assert.Equal($"{expected} Run with {args[0]} --help for the mode's options.{Environment.NewLine}", error.ToString());
    }

    [Fact]
    public void TwoModesAreRefusedAndACommandLineWithoutAModeIsLeftToBenchmarkDotNet()
    {
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        Assert.Equal(2, QuickModes.Run(["--device-check", "--model-check"], error));
        Assert.Equal($"--device-check and --model-check are two modes; give one at a time.{Environment.NewLine}", error.ToString());

        Assert.Null(QuickModes.Run(["--filter", "*ModelStepBenchmarks*"], error));
    }
}
