using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using MoeGpuStats.Native;

namespace MoeGpuStats.Tests.Native;

/// <summary>
/// <see cref="NativeApi"/>'s whole-model entry points (<c>moegs_model_*</c>), called in process through its [UnmanagedCallersOnly] entry points (the
/// addresses libmoegs.so forwards to), on the managed engine and ILGPU's CPU accelerator: a model recorded
/// through it equals a <see cref="ModelRoutingStats"/> recorded directly, and every refused call names its
/// C argument and leaves the model as it was. (native/tests/test_moegs.c covers the same through libmoegs.so.)
/// </summary>
public sealed unsafe partial class NativeApiTests
{
    private const int Ok = 0, InvalidArgument = 1, InvalidHandle = 2, DeviceError = 4, IoError = 6;
    private const int Layers = 3, Experts = 8, Tokens = 40, TopK = 2, Window = 4, Steps = 7;
    private const int Stride = (Tokens * TopK) + 6; // layers apart with a gap, as views of one larger buffer

    public static TheoryData<string> Engines => ["managed", "cpu"];

    [Theory]
    [MemberData(nameof(Engines))]
    public void AModelRecordedThroughTheCApiEqualsOneRecordedDirectly(string accelerator)
    {
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = Window, ExpertCapacity = 25, UtilizationDecay = 0.5f };
        using var direct = new ModelRoutingStats(options);
        var handle = Create(accelerator, Layers, Experts, 25, Window, 0.5f);
        try
        {
            var rng = new Random(11);
            for (var step = 0; step < Steps; step++)
            {
                var ids = Enumerable.Range(0, Layers * Stride).Select(i => rng.Next(-1, Experts + 1)).ToArray();
                var losses = Enumerable.Range(0, Layers).Select(l => 0.1f * (l + step)).ToArray();
                var zLosses = Enumerable.Range(0, Layers).Select(l => 0.01f * l).ToArray();
                var valid = Tokens - step; // the rows past the count are padding, left out
                Assert.Equal(Ok, Record(handle, ids, Layers, Tokens, TopK, Stride, valid, losses, zLosses));
                direct.RecordStep(ids, valid, TopK, Stride, losses, zLosses);
            }

            Assert.Equal(direct.WindowLoad(), WindowLoad(handle));
            var (summary, window, sinceStart) = Summary(handle, null);
            var expected = direct.Summary();
            Assert.Equal(NativeModelBalance.From(expected, Experts), summary);
            Assert.Equal(expected.Window.Layers.Select(NativeLayerBalance.From), window);
            Assert.Equal(expected.SinceStart.Layers.Select(NativeLayerBalance.From), sinceStart);

            // The window cut to its newest steps: moegs_model_recent_window_load and moegs_model_recent_summary.
            foreach (var recent in new[] { 1, 2, Window })
            {
                Assert.Equal(Ok, RecentWindowLoad(handle, recent, out var recentLoad, Layers * Experts));
                Assert.Equal(direct.WindowLoad(recent), recentLoad);
                Assert.Equal(Ok, RecentSummary(handle, recent, [0, 0, 1, 1, 2, 2, 3, 3], out var recentSummary, out var recentWindow));
                var expectedRecent = direct.Summary(recent, [0, 0, 1, 1, 2, 2, 3, 3]);
                Assert.Equal(NativeModelBalance.From(expectedRecent, 4), recentSummary);
                Assert.Equal(expectedRecent.Window.Layers.Select(NativeLayerBalance.From), recentWindow);
            }

            int[] ranks = [0, 0, 1, 1, 2, 2, 3, 3];
            var (ranked, _, rankedSinceStart) = Summary(handle, ranks);
            var expectedRanked = direct.Summary(ranks);
            Assert.Equal(NativeModelBalance.From(expectedRanked, 4), ranked);
            Assert.Equal(expectedRanked.SinceStart.Layers.Select(NativeLayerBalance.From), rankedSinceStart);

            for (var l = 0; l < Layers; l++)
            {
                using var layer = direct.Layer(l);
                using var snapshot = layer.Snapshot();
                Assert.Equal(NativeSnapshot.From(snapshot), LayerSnapshot(handle, l));
            }

            // moegs_model_read: every part of one reading, over ranks with the newest 2 steps beside.
            var read = Read(handle, recentSteps: 2, ranks);
            Assert.Equal(NativeModelBalance.From(expectedRanked, 4), read.Summary);
            Assert.Equal(expectedRanked.Window.Layers.Select(NativeLayerBalance.From), read.Window);
            Assert.Equal(expectedRanked.SinceStart.Layers.Select(NativeLayerBalance.From), read.SinceStart);
            var expectedTwo = direct.Summary(2, ranks);
            Assert.Equal(NativeModelBalance.From(expectedTwo, 4), read.Recent);
            Assert.Equal(expectedTwo.Window.Layers.Select(NativeLayerBalance.From), read.RecentWindow);
            Assert.Equal(direct.WindowLoad(), read.WindowLoad);
            for (var l = 0; l < Layers; l++)
            {
                using var layer = direct.Layer(l);
                Assert.Equal(layer.ExpertTokenCounts, read.Counts[(l * Experts)..((l + 1) * Experts)]);
                var totals = read.Totals[l];
                Assert.Equal(
                    (layer.TotalRoutings, layer.TotalTokens, layer.TokensDropped, layer.RoutedSlots, layer.SlotsDropped, layer.InvalidExpertIds, layer.AverageLoadBalanceLoss, layer.AverageRouterZLoss, layer.RoutingEfficiency),
                    (totals.TotalRoutings, totals.TotalTokens, totals.TokensDropped, totals.RoutedSlots, totals.SlotsDropped, totals.InvalidExpertIds, totals.AverageLoadBalanceLoss, totals.AverageRouterZLoss, totals.RoutingEfficiency));
            }

            Assert.True(read.Totals[0].RoutedSlots > 0 && read.Totals[0].InvalidExpertIds > 0 && read.Totals[^1].AverageLoadBalanceLoss > 0, "the totals check reads zeros");

            Assert.Equal(Ok, Call(&NativeApi.ModelReset, handle));
            direct.Reset();
            Assert.Equal(direct.WindowLoad(), WindowLoad(handle));
            Assert.Equal(0ul, Summary(handle, null).Summary.Steps);
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void ARefusedCallNamesItsArgumentAndLeavesTheModel(string accelerator)
    {
        var handle = Create(accelerator, Layers, Experts, 0, Window, -1f);
        try
        {
            var ids = Enumerable.Range(0, Layers * Stride).Select(i => i % Experts).ToArray();
            Assert.Equal(Ok, Record(handle, ids, Layers, Tokens, TopK, 0, null, null, null));
            var before = Reads(handle);

            Refused(Record(handle, ids, Layers - 1, Tokens, TopK, 0, null, null, null), InvalidArgument, "layers = 2", "the model's layers, 3");
            Refused(Record(handle, ids, Layers, Tokens, TopK, (Tokens * TopK) - 1, null, null, null), InvalidArgument, "layer_stride = 79", "tokens * top_k = 40 * 2 = 80");
            Refused(Record(handle, ids, Layers, Tokens, TopK, -3, null, null, null), InvalidArgument, "layer_stride = -3");
            // Strides whose ids' bytes overflow an int64 (4 bytes each): a stride of 2^62 would wrap layer l's address onto layer 0's ids.
            Refused(Record(handle, ids, Layers, Tokens, TopK, 1L << 62, null, null, null), InvalidArgument, "layer_stride = 4611686018427387904", "exceeds 2305843009213693951 ids");
            Refused(Record(handle, ids, Layers, Tokens, TopK, 1L << 61, null, null, null), InvalidArgument, "layer_stride = 2305843009213693952", "exceeds 2305843009213693951 ids");
            Refused(Record(handle, ids, Layers, Tokens, TopK, long.MaxValue, null, null, null), InvalidArgument, "layer_stride = 9223372036854775807", "exceeds 2305843009213693951 ids");
            Refused(Record(handle, ids, Layers, -1, TopK, 0, null, null, null), InvalidArgument, "tokens = -1");
            Refused(Record(handle, ids, Layers, Tokens, TopK, 0, null, [0f, float.NaN, 0f], null), InvalidArgument, "load_balance_losses[1] = NaN", "finite");
            Refused(Record(handle, ids, Layers, Tokens, TopK, 0, null, null, [float.PositiveInfinity, 0f, 0f]), InvalidArgument, "router_z_losses[0] = Infinity");
            Refused(Record(handle, ids, Layers, Tokens, TopK, Stride, null, null, null, nullIds: true), InvalidArgument, "ids is NULL with 252 ids to read: NULL is allowed only when the step reads none (tokens is 0).");
            Refused(WindowLoad(handle, out _, (Layers * Experts) - 1), InvalidArgument, "capacity = 23", "layers * experts = 3 * 8 = 24");
            Refused(Summary(handle, [0, 0, 1, 1, 2, 2, 3, -1], out _), InvalidArgument, "expert_ranks[7] = -1", "[0, experts - 1 = 7]");
            Refused(Summary(handle, [0, 0, 1, 1, 2, 2, 3, 8], out _), InvalidArgument, "expert_ranks[7] = 8");
            Refused(Summary(handle, [1, 1, 2, 2, 3, 3, 4, 4], out _), InvalidArgument, "expert_ranks: rank 0 holds no expert while rank 4 holds one; ranks are numbered from 0 with none left empty (numbered from 1? subtract 1).");
            Refused(LayerSnapshot(handle, Layers, out _), InvalidArgument, "layer = 3", "[0, 2]");
            Refused(Call(&NativeApi.ModelSummary, handle, null, null, null, null), InvalidArgument, "out is NULL");
            Refused(Call(&NativeApi.ModelWindowLoad, handle, null, Layers * Experts), InvalidArgument, "dst is NULL: moegs_model_window_load copies layers * experts counts there.");
            foreach (var recent in new[] { 0, -1, Window + 1, int.MinValue, int.MaxValue })
            {
                Refused(RecentWindowLoad(handle, recent, out _, Layers * Experts), InvalidArgument, FormattableString.Invariant($"recent_steps = {recent}: must lie in [1, 4] (the model's window)."));
                Refused(RecentSummary(handle, recent, [0, 0, 1, 1, 2, 2, 3, -1], out _, out _), InvalidArgument, FormattableString.Invariant($"recent_steps = {recent}: must lie in [1, 4]"));
            }

            Refused(RecentWindowLoad(handle, 1, out _, (Layers * Experts) - 1), InvalidArgument, "capacity = 23", "layers * experts = 3 * 8 = 24");
            Refused(RecentSummary(handle, 1, [0, 0, 1, 1, 2, 2, 3, -1], out _, out _), InvalidArgument, "expert_ranks[7] = -1");
            Refused(((delegate* unmanaged<long, int, ulong*, int, int>)&NativeApi.ModelRecentWindowLoad)(handle, 1, null, Layers * Experts), InvalidArgument, "dst is NULL: moegs_model_recent_window_load");
            Refused(((delegate* unmanaged<long, int, int*, NativeModelBalance*, NativeLayerBalance*, NativeLayerBalance*, int>)&NativeApi.ModelRecentSummary)(handle, 1, null, null, null, null), InvalidArgument, "out is NULL: moegs_model_recent_summary");

            // A model handle is not an aggregator's, nor is a handle never created a model.
            NativeSnapshot snapshot;
            Refused(((delegate* unmanaged<long, NativeSnapshot*, int>)&NativeApi.Snapshot)(handle, &snapshot), InvalidHandle, $"handle {handle} is not a live aggregator (it is a live model's; give the handle moegs_create returned).");
            Refused(WindowLoad(0, out _, Layers * Experts), InvalidHandle, "handle 0 is not a live model (never created, or destroyed).");
            Assert.Equal(before, Reads(handle));
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }

        Refused(Call(&NativeApi.ModelDestroy, handle), InvalidHandle, "not a live model");
    }

    /// <summary>A step of no token reads no id: NULL ids at any layer stride record it on every engine (the managed engine failed part-way, a layer ahead of the others).</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void AStepOfNoTokenTakesNullIdsAtAnyLayerStride(string accelerator)
    {
        var handle = Create(accelerator, Layers, Experts, 0, Window, -1f);
        try
        {
            Assert.Equal(Ok, Record(handle, [], Layers, 0, TopK, 10, null, null, null, nullIds: true));
            Assert.Equal(Ok, Record(handle, [], Layers, 0, TopK, 1L << 40, null, null, null, nullIds: true));
            Assert.Equal(2UL, Summary(handle, null).Summary.Steps);
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }

    /// <summary>A model of one layer never steps to a second layer: any layer_stride takes its ids, as ModelRoutingStats.RecordStep takes them.</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void AOneLayerModelTakesAnyLayerStride(string accelerator)
    {
        var options = new ModelRoutingStatsOptions { Layers = 1, Experts = Experts, Window = Window };
        using var direct = new ModelRoutingStats(options);
        var handle = Create(accelerator, 1, Experts, 0, Window, -1f);
        try
        {
            int[] ids = [0, 1, 7, 7];
            Assert.Equal(Ok, Record(handle, ids, 1, 2, TopK, long.MaxValue, null, null, null));
            direct.RecordStep(ids, 2, TopK, long.MaxValue);
            Assert.Equal(Ok, WindowLoad(handle, out var load, Experts));
            Assert.Equal(direct.WindowLoad(), load[..Experts]);
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }

    /// <summary>
    /// moegs_model_device_arrays on the CPU accelerator: read through its pointers right after each step
    /// (the step's fold still pending when the call comes), the memory equals the window load and each
    /// layer's token counts of a model recorded directly, and afterwards what moegs_model_window_load
    /// copies out; the addresses do not move.
    /// </summary>
    [Fact]
    public void DeviceArraysPointAtTheModelsCountsWithThePendingStepFolded()
    {
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = Window };
        using var direct = new ModelRoutingStats(options);
        var handle = Create("cpu", Layers, Experts, 0, Window, -1f);
        try
        {
            var first = DeviceArrays(handle);
            Assert.Equal("cpu", Marshal.PtrToStringUTF8(first.Accelerator));
            Assert.Equal((Layers, Experts, 0ul, 0, 1), (first.Layers, first.Experts, first.Steps, first.WindowSteps, first.Synchronized));
            var rng = new Random(17);
            for (var step = 0; step < Steps; step++)
            {
                var ids = Enumerable.Range(0, Layers * Stride).Select(i => rng.Next(-1, Experts + 1)).ToArray();
                var valid = Tokens - step;
                Assert.Equal(Ok, Record(handle, ids, Layers, Tokens, TopK, Stride, valid, null, null));
                direct.RecordStep(ids, valid, TopK, Stride);

                var arrays = DeviceArrays(handle);
                Assert.Equal(direct.WindowLoad(), new ReadOnlySpan<ulong>((void*)arrays.WindowLoad, Layers * Experts).ToArray());
                var counts = new ReadOnlySpan<ulong>((void*)arrays.TokenCounts, Layers * Experts).ToArray();
                for (var l = 0; l < Layers; l++)
                {
                    using var layer = direct.Layer(l);
                    Assert.Equal(layer.ExpertTokenCounts, counts.Skip(l * Experts).Take(Experts));
                }

                Assert.Equal(((ulong)step + 1, Math.Min(step + 1, Window)), (arrays.Steps, arrays.WindowSteps));
                Assert.Equal((first.WindowLoad, first.TokenCounts), (arrays.WindowLoad, arrays.TokenCounts));
            }

            var last = DeviceArrays(handle);
            Assert.Equal(WindowLoad(handle), new ReadOnlySpan<ulong>((void*)last.WindowLoad, Layers * Experts).ToArray());
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }

    [Fact]
    public void DeviceArraysAreRefusedWithoutAnAddressToGive()
    {
        var managed = Create("managed", Layers, Experts, 0, Window, -1f);
        var cpu = Create("cpu", Layers, Experts, 0, Window, -1f);
        try
        {
            var arrays = new NativeModelArrays { WindowLoad = 8, Accelerator = 8 };
            Refused(DeviceArrays(managed, 0, &arrays), InvalidArgument, $"handle = {managed}: a model on managed", "cuda or cpu", "moegs_model_window_load");
            Assert.Equal(default(NativeModelArrays), arrays);
            Refused(DeviceArrays(cpu, 0x10, &arrays), InvalidArgument, "stream = 0x10", "pass NULL");
            Refused(DeviceArrays(cpu, 0, null), InvalidArgument, "out is NULL");
            Refused(DeviceArrays(0, 0, &arrays), InvalidHandle, "handle 0 is not a live model");
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, managed));
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, cpu));
        }
    }

    [Fact]
    public void ARefusedCreateNamesItsArgumentAndWritesZero()
    {
        Refused(Create("managed", 0, Experts, 0, 0, -1f, out var handle), InvalidArgument, "layers = 0", "[1, 1024]");
        Assert.Equal(0, handle);
        Refused(Create("managed", Layers, 4097, 0, 0, -1f, out _), InvalidArgument, "experts = 4097", "[1, 4096]");
        Refused(Create("managed", Layers, Experts, -1, 0, -1f, out _), InvalidArgument, "expert_capacity = -1");
        Refused(Create("managed", Layers, Experts, 0, -1, -1f, out _), InvalidArgument, "window = -1", "default of 1000");
        Refused(Create("managed", 1024, 4096, 0, 0, -1f, out _), InvalidArgument, "window = 0: window * layers * experts = 1000 * 1024 * 4096 = 4194304000 counts", "give a window of 1 to 511 steps.");
        Refused(Create("managed", Layers, Experts, 0, 0, 1f, out _), InvalidArgument, "utilization_decay = 1", "[0, 1)");
        Refused(Create("managed", Layers, Experts, 0, 0, float.NaN, out _), InvalidArgument, "utilization_decay = NaN");
        Refused(Create("tpu", Layers, Experts, 0, 0, -1f, out _), InvalidArgument, "accelerator = \"tpu\"");
        // In the words of every caller: C's NULL and Python's None are both "no name".
        Refused(Create(" ", Layers, Experts, 0, 0, -1f, out _), InvalidArgument, "accelerator = \" \": must be one of auto, cuda, opencl, cpu, managed (no name: auto)");

        // A name that is not UTF-8 is shown as its bytes, not as U+FFFD, which would show another name.
        fixed (byte* p = new byte[] { 0xFF, 0xFE, (byte)'c', (byte)'p', (byte)'u', 0 })
        {
            long refused = 0;
            Refused(
                ((delegate* unmanaged<byte*, int, int, int, int, float, long*, int>)&NativeApi.ModelCreate)(p, Layers, Experts, 0, 0, -1f, &refused),
                InvalidArgument,
                "accelerator = \"\\xff\\xfecpu\", not UTF-8 (undecodable bytes shown as \\xNN): must be one of auto, cuda, opencl, cpu, managed (no name: auto)");
            Assert.Equal(0, refused);
            Refused(((delegate* unmanaged<byte*, int, int, long*, int>)&NativeApi.Create)(p, Experts, 0, &refused), InvalidArgument, "accelerator = \"\\xff\\xfecpu\", not UTF-8");
        }

        // The characters \xff beside the byte 0xFF: the backslash is doubled, so the two read apart.
        fixed (byte* p = new byte[] { (byte)'\\', (byte)'x', (byte)'f', (byte)'f', 0xFF, 0 })
        {
            long refused = 0;
            Refused(((delegate* unmanaged<byte*, int, int, int, int, float, long*, int>)&NativeApi.ModelCreate)(p, Layers, Experts, 0, 0, -1f, &refused), InvalidArgument, "accelerator = \"\\\\xff\\xff\", not UTF-8 (undecodable bytes shown as \\xNN)");
        }

        // A name is echoed by its first 64 characters, a terminal's controls and bidirectional overrides escaped.
        Refused(Create("\u202e" + new string('x', 1 << 20), Layers, Experts, 0, 0, -1f, out _), InvalidArgument, $"accelerator = \"\\u202e{new string('x', 63)}...\": must be one of auto");

        // The managed engine's ring is one .NET array: the limit is Array.MaxLength, not 2^31 - 1, on every accelerator.
        Refused(Create("managed", 1, 1, 0, Array.MaxLength + 1, -1f, out _), InvalidArgument, $"window = {Array.MaxLength + 1}", $"at most {Array.MaxLength}");
        Refused(Create("cpu", 2, 1, 0, (Array.MaxLength / 2) + 1, -1f, out _), InvalidArgument, $"window = {(Array.MaxLength / 2) + 1}");
    }

    /// <summary>
    /// utilization_decay: -0.0 is not below 0, so it is decay 0, as the library's [0, 1) holds it (decayed utilization kept,
    /// saved as 0, not -0); the value nearest below 0 is none.
    /// </summary>
    [Fact]
    public void ADecayOfNegativeZeroIsDecayZeroAndAnyValueBelowZeroNone()
    {
        var folder = Directory.CreateTempSubdirectory("moegs-");
        var zero = Create("managed", Layers, Experts, 0, Window, -0f);
        var none = Create("managed", Layers, Experts, 0, Window, -float.Epsilon);
        try
        {
            var decayed = (delegate* unmanaged<long, int, float*, int, int>)&NativeApi.ModelLayerDecayedUtilization;
            var utilization = new float[Experts];
            fixed (float* p = utilization)
            {
                Assert.Equal(Ok, decayed(zero, 0, p, Experts));
                Refused(decayed(none, 0, p, Experts), InvalidArgument, "this model keeps no decayed utilization", "not one below 0.");
            }

            var path = Path.Combine(folder.FullName, "zero.json");
            Assert.Equal(Ok, Save(&NativeApi.ModelSave, zero, path));
            using var saved = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
            Assert.Equal("0", saved.RootElement.GetProperty("utilization_decay").GetRawText());
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, zero));
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, none));
            folder.Delete(recursive: true);
        }
    }

    /// <summary>"opencl" takes MOEGS_MODEL_SKIP_EMPTY_STEPS (its steps take a cl_mem, which the C# tests of the engine record through).</summary>
    [Fact]
    public void OpenClTakesTheSkipFlag()
    {
        TestAccelerators.Require("opencl");
        Assert.Equal(Ok, Create("opencl", Layers, Experts, 0, 0, -1f, out var skipping, flags: 1));
        Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, skipping));
    }

    /// <summary>
    /// moegs_model_create_with_flags: MOEGS_MODEL_SKIP_EMPTY_STEPS leaves a step of padding alone out of the
    /// model's steps; bits that are no flag are refused naming them, writing 0; a NULL out names the function called.
    /// </summary>
    [Theory]
    [InlineData("managed")]
    [InlineData("cpu")]
    public void TheSkipFlagLeavesOutEmptyStepsAndOtherBitsAreRefused(string accelerator)
    {
        Assert.Equal(Ok, Create(accelerator, Layers, Experts, 0, 0, -1f, out var skipping, flags: 1));
        try
        {
            var ids = new int[Layers * 2 * 2];
            Assert.Equal(Ok, Record(skipping, [.. ids.Select((_, i) => i % Experts)], Layers, 2, 2, 0, null, null, null));
            Assert.Equal(Ok, Record(skipping, [.. ids.Select(_ => -1)], Layers, 2, 2, 0, null, null, null));
            Assert.Equal(Ok, Record(skipping, ids, Layers, 2, 2, 0, 0, null, null));
            Assert.Equal(1UL, Summary(skipping, null).Summary.Steps);
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, skipping));
        }

        Refused(Create(accelerator, Layers, Experts, 0, 0, -1f, out var refused, flags: 0x80000003), InvalidArgument, "flags = 0x80000003", "0x80000002 is none of them");
        Assert.Equal(0, refused);
        var name = Encoding.UTF8.GetBytes(accelerator + "\0");
        fixed (byte* p = name)
        {
            Refused(((delegate* unmanaged<byte*, int, int, int, int, float, uint, long*, int>)&NativeApi.ModelCreateWithFlags)(p, Layers, Experts, 0, 0, -1f, 1, null), InvalidArgument, "out is NULL: moegs_model_create_with_flags writes");
        }
    }

    /// <summary>The model's structs are the header's, field by field (the header's size checks catch a size only).</summary>
    [Theory]
    [InlineData("moegs_model_balance", typeof(NativeModelBalance))]
    [InlineData("moegs_layer_balance", typeof(NativeLayerBalance))]
    [InlineData("moegs_model_arrays", typeof(NativeModelArrays))]
    [InlineData("moegs_layer_totals", typeof(NativeLayerTotals))]
    public void TheModelStructsAreTheHeadersFieldByField(string name, Type managed)
    {
        var header = File.ReadAllText(Path.Combine(Checkout.RequireRoot("include/moegs.h is not here"), "include", "moegs.h"));
        var body = Regex.Match(header, $@"typedef struct {name} \{{(.*?)\}} {name};", RegexOptions.Singleline);
        Assert.True(body.Success, $"include/moegs.h declares no {name}");
        var widths = new Dictionary<string, (Type Managed, int Bytes)>
        {
            ["uint64_t"] = (typeof(ulong), 8), ["int32_t"] = (typeof(int), 4), ["double"] = (typeof(double), 8),
            ["void*"] = (typeof(IntPtr), IntPtr.Size), ["char*"] = (typeof(IntPtr), IntPtr.Size), ["float"] = (typeof(float), 4),
        };
        long offset = 0, alignment = 1;
        var expected = new List<string>();
        var declarations = Regex.Matches(Regex.Replace(body.Groups[1].Value, @"/\*.*?\*/", "", RegexOptions.Singleline), @"(?:const\s+)?(\w+)\s*(\*?)\s*(\w+)\s*;");
        foreach (var field in declarations.Select(m => (Type: m.Groups[1].Value + m.Groups[2].Value, Name: m.Groups[3])))
        {
            var (clr, bytes) = widths[field.Type];
            offset = (offset + bytes - 1) / bytes * bytes; // C's natural alignment
            alignment = Math.Max(alignment, bytes);
            expected.Add($"{offset}: {clr.Name} {string.Concat(field.Name.Value.Split('_').Select(part => char.ToUpperInvariant(part[0]) + part[1..]))}");
            offset += bytes;
        }

        var actual = managed.GetFields(BindingFlags.Public | BindingFlags.Instance)
            .Select(f => (Offset: Marshal.OffsetOf(managed, f.Name).ToInt64(), Field: f))
            .OrderBy(f => f.Offset)
            .Select(f => $"{f.Offset}: {f.Field.FieldType.Name} {f.Field.Name}");
        Assert.Equal(expected, actual);
        Assert.Equal((offset + alignment - 1) / alignment * alignment, Marshal.SizeOf(managed));
        Assert.Equal(Marshal.SizeOf(managed), name switch
        {
            "moegs_model_balance" => ((delegate* unmanaged<int>)&NativeApi.ModelBalanceSize)(),
            "moegs_layer_balance" => ((delegate* unmanaged<int>)&NativeApi.LayerBalanceSize)(),
            "moegs_layer_totals" => ((delegate* unmanaged<int>)&NativeApi.LayerTotalsSize)(),
            _ => ((delegate* unmanaged<int>)&NativeApi.ModelArraysSize)(),
        });
    }

    /// <summary>
    /// moegs_model_save and moegs_save write what <c>moegs report</c> and <c>merge</c> read: the model reads back
    /// with its window load and summary, the aggregator with its snapshot; a NULL, empty or non-UTF-8 path, a
    /// folder that does not exist, a target that cannot be replaced and a dead handle are refused with their reason.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void SavedStatisticsReadBackAndBadPathsAreRefused(string accelerator)
    {
        var folder = Directory.CreateTempSubdirectory("moegs-");
        var handle = Create(accelerator, Layers, Experts, 25, Window, -1f);
        long aggregator = 0;
        try
        {
            var rng = new Random(5);
            for (var step = 0; step < Steps; step++)
            {
                var ids = Enumerable.Range(0, Layers * Stride).Select(_ => rng.Next(-1, Experts)).ToArray();
                Assert.Equal(Ok, Record(handle, ids, Layers, Tokens, TopK, Stride, null, null, null));
            }

            var path = Path.Combine(folder.FullName, "rank0.json");
            Assert.Equal(Ok, Save(&NativeApi.ModelSave, handle, path));
            using (var read = System.Text.Json.JsonSerializer.Deserialize<ModelRoutingStats>(File.ReadAllText(path))!)
            {
                Assert.Equal(WindowLoad(handle), read.WindowLoad());
                var (summary, window, _) = Summary(handle, null);
                var expected = read.Summary();
                Assert.Equal(NativeModelBalance.From(expected, Experts), summary);
                Assert.Equal(expected.Window.Layers.Select(NativeLayerBalance.From), window);
            }

            // Each refusal says which case it is.
            Refused(Save(&NativeApi.ModelSave, handle, null), InvalidArgument, "path is NULL: moegs_model_save writes the statistics as JSON to the file it names, in UTF-8.");
            Refused(Save(&NativeApi.ModelSave, handle, ""), InvalidArgument, "path is empty: moegs_model_save writes the statistics as JSON to the file it names, in UTF-8.");
            var missing = Path.Combine(folder.FullName, "no-such-folder", "rank0.json");
            // The library's reason ends inside the parenthesis, without its own full stop.
            Refused(Save(&NativeApi.ModelSave, handle, missing), IoError, missing, "cannot be written", "in an existing folder); the file is as it was.");
            Refused(Save(&NativeApi.ModelSave, handle + 1000, path), InvalidHandle, "not a live model");

            // A name that is not UTF-8 would be written as another name (a replacement character): refused, its bytes shown.
            var bad = Path.Combine(folder.FullName, "bad");
            var notUtf8 = Encoding.UTF8.GetBytes(bad).Concat(new byte[] { 0xFF, 0xFE, (byte)'.', (byte)'j', 0 }).ToArray();
            fixed (byte* p = notUtf8)
            {
                Refused(
                    ((delegate* unmanaged<long, byte*, int>)&NativeApi.ModelSave)(handle, p),
                    InvalidArgument,
                    $"path = \"{bad}\\xff\\xfe.j\": not UTF-8 (undecodable bytes shown as \\xNN): moegs_model_save writes the statistics as JSON to the file it names, in UTF-8.");
            }

            // /proc holds processes, not devices (which are /dev's): each system folder is named for what it holds.
            if (OperatingSystem.IsLinux())
            {
                Refused(
                    Save(&NativeApi.ModelSave, handle, "/proc/self/moegs.json"),
                    IoError,
                    "/proc/self/moegs.json: cannot be written (/proc/self/moegs.json is in /proc, the system's own names (processes, the kernel's settings), not a file a write may replace; give the path of a file to write); the file is as it was.");
            }

            // A target that cannot be replaced (a folder) is left as it was, and no temporary stays beside it.
            var folderTarget = Directory.CreateDirectory(Path.Combine(folder.FullName, "taken.json"));
            Refused(Save(&NativeApi.ModelSave, handle, folderTarget.FullName), IoError, folderTarget.FullName, "cannot be written");
            Assert.True(Directory.Exists(folderTarget.FullName));
            Assert.Equal(["rank0.json"], folder.GetFiles().Select(f => f.Name));

            aggregator = CreateAggregator("managed");
            var one = Path.Combine(folder.FullName, "router.json");
            Assert.Equal(Ok, Save(&NativeApi.Save, aggregator, one));
            using (var loaded = MoeGpuStats.Serialization.RoutingStatsFile.Load(one))
            {
                Assert.Equal(0UL, loaded.TotalRoutings);
                Assert.Equal(Experts, loaded.Options.Experts);
            }

            Refused(Save(&NativeApi.Save, aggregator, null), InvalidArgument, "path is NULL: moegs_save writes");
            Refused(Save(&NativeApi.Save, handle, one), InvalidHandle, "not a live aggregator");
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
            if (aggregator != 0)
            {
                Assert.Equal(Ok, Call(&NativeApi.Destroy, aggregator));
            }

            folder.Delete(recursive: true);
        }
    }

    private static int Save(delegate* unmanaged<long, byte*, int> function, long handle, string? path)
    {
        if (path is null)
        {
            return function(handle, null);
        }

        fixed (byte* p = Encoding.UTF8.GetBytes(path + "\0"))
        {
            return function(handle, p);
        }
    }

    /// <summary>
    /// Every read of a model, to compare before and after refused calls: each struct by its fields (their ToString is
    /// the type's name alone, so a struct compared by it would compare nothing).
    /// </summary>
    private static string Reads(long handle)
    {
        var (summary, window, sinceStart) = Summary(handle, null);
        var layers = Enumerable.Range(0, Layers).Select(l => Fields(LayerSnapshot(handle, l)));
        return string.Join('\n', [string.Join(',', WindowLoad(handle)), Fields(summary), .. window.Select(Fields), .. sinceStart.Select(Fields), .. layers]);
    }

    /// <summary>A struct's public fields, named, their values written invariantly (floats round-trip).</summary>
    private static string Fields<T>(T value)
        where T : struct =>
        string.Join(", ", typeof(T).GetFields(BindingFlags.Public | BindingFlags.Instance).Select(f => FormattableString.Invariant($"{f.Name} = {f.GetValue(value)}")));

    /// <summary>
    /// A model's C checks at their edges: one id from NULL is refused, a valid-token count at an address no int starts
    /// at is refused, and a step that spans exactly as many ids as an int64 counts in bytes is named as too long for the
    /// managed engine, not as past int64.
    /// </summary>
    [Fact]
    public void AModelsChecksHoldAtTheirEdges()
    {
        var one = Create("managed", 1, Experts, 0, Window, -1f);
        var two = Create("managed", 2, Experts, 0, Window, -1f);
        try
        {
            Assert.Equal(Ok, Record(one, [3], 1, 1, 1, 0, null, null, null));
            Assert.Equal(Ok, Record(two, [3, 5], 2, 1, 1, 0, null, null, null));
            ulong[] oneBefore = WindowLoad(one), twoBefore = WindowLoad(two);

            Refused(Record(one, [0], 1, 1, 1, 0, null, null, null, nullIds: true), InvalidArgument, "ids is NULL with 1 ids to read");
            int[] ids = [0, 1];
            var counts = new int[2];
            fixed (int* i = ids, c = counts)
            {
                Refused(RecordIds(one, (IntPtr)i, 0, 1, 1, 1, 0, 0, (IntPtr)c + 1, 0, 0), InvalidArgument, "valid_tokens = 0x", "must be aligned to 4 bytes");
                var mostIds = long.MaxValue / sizeof(int);
                Refused(RecordIds(two, (IntPtr)i, 0, 2, 1, 1, mostIds - 1, 0, 0, 0, 0), InvalidArgument, $"the step spans {mostIds} ids; the managed engine reads at most 2147483647 per step");
            }

            Assert.Equal(oneBefore, WindowLoad(one));
            Assert.Equal(twoBefore, WindowLoad(two));
            Assert.Equal(1ul, twoBefore[Experts + 5]);
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, one));
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, two));
        }
    }

    /// <summary>
    /// moegs_accelerator or moegs_model_accelerator (<paramref name="name"/>) names the handle's accelerator; given a dead
    /// handle, it leaves NULL in *out, not what the caller had there.
    /// </summary>
    private static void AssertAcceleratorNamed(delegate* unmanaged<long, byte**, int> name, long handle, string accelerator, string kind)
    {
        byte* written = (byte*)1;
        Assert.Equal(Ok, name(handle, &written));
        Assert.Equal(accelerator, Marshal.PtrToStringUTF8((IntPtr)written));
        written = (byte*)1;
        Refused(name(0, &written), InvalidHandle, $"handle 0 is not a live {kind}");
        Assert.True(written is null, $"a failed call on a dead {kind}'s handle left the caller's pointer");
    }

    private static void Refused(int status, int expected, params string[] words)
    {
        var message = Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)&NativeApi.LastError)())!;
        Assert.True(status == expected, $"status {status}, want {expected}: {message}");
        Assert.DoesNotContain('\n', message);
        Assert.DoesNotContain("(Parameter", message);
        foreach (var word in words)
        {
            Assert.Contains(word, message);
        }
    }

    /// <summary>
    /// A model's reads hold the handle's read lock, not the lock its records take: with that lock held (a record in
    /// progress, as far as the reads can tell), every read finishes.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void AModelsReadsDoNotWaitForTheLockItsRecordsTake(string accelerator)
    {
        var handle = Create(accelerator, Layers, Experts, 0, Window, -1f);
        try
        {
            var ids = Enumerable.Range(0, Layers * Tokens * TopK).Select(i => i % Experts).ToArray();
            Assert.Equal(Ok, Record(handle, ids, Layers, Tokens, TopK, 0, null, null, null));
            var expected = WindowLoad(handle);
            var reads = new (string Name, Action Read)[]
            {
                ("moegs_model_window_load", () => Assert.Equal(expected, WindowLoad(handle))),
                ("moegs_model_summary", () => Summary(handle, [0, 0, 1, 1, 2, 2, 3, 3])),
                ("moegs_model_recent_summary", () => Assert.Equal(Ok, RecentSummary(handle, 1, [0, 0, 1, 1, 2, 2, 3, 3], out _, out _))),
                ("moegs_model_recent_window_load", () => Assert.Equal(Ok, RecentWindowLoad(handle, 1, out _, Layers * Experts))),
            };
            var live = NativeApi.Models[handle];
            foreach (var (name, read) in reads)
            {
                Exception? failure = null;
                var reader = new Thread(() =>
                {
                    try
                    {
                        read();
                    }
                    catch (Exception exception)
                    {
                        failure = exception;
                    }
                });
                bool finished;
                using (live.Gate.EnterScope())
                {
                    reader.Start();
                    finished = reader.Join(Patience.GoAhead);
                }

                reader.Join();
                Assert.True(finished, $"{name} waited for the lock a record takes");
                Assert.Null(failure);
            }
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }

    /// <summary>
    /// The structs written through a caller's pointer carry zero in their padding (a snapshot's last 4 bytes, a
    /// layer balance's 4 after <c>dead</c>, layer totals' last 4), not what the writer's stack held there: two
    /// reads of one state are equal under memcmp. The destinations start as 0xFF so that a gap left unwritten shows.
    /// </summary>
    [Theory]
    [InlineData("managed")]
    [InlineData("cpu")]
    public void WrittenStructsHaveZeroPadding(string accelerator)
    {
        Assert.Equal([(156, 4)], NativeStruct.Gaps<NativeSnapshot>());
        Assert.Equal([(68, 4)], NativeStruct.Gaps<NativeLayerBalance>());
        Assert.Equal([(60, 4)], NativeStruct.Gaps<NativeLayerTotals>());
        Assert.Empty(NativeStruct.Gaps<NativeModelBalance>());

        const int Layers = 2, Experts = 8, Tokens = 4, TopK = 2;
        var handle = Create(accelerator, Layers, Experts, 0, 0, -1f);
        try
        {
            Assert.Equal(Ok, Record(handle, [.. Enumerable.Range(0, Layers * Tokens * TopK).Select(i => i % Experts)], Layers, Tokens, TopK, 0, null, null, null));
            var snapshot = new byte[sizeof(NativeSnapshot)];
            var summary = new byte[sizeof(NativeModelBalance)];
            var window = new byte[Layers * sizeof(NativeLayerBalance)];
            var sinceStart = new byte[Layers * sizeof(NativeLayerBalance)];
            foreach (var bytes in new[] { snapshot, summary, window, sinceStart })
            {
                bytes.AsSpan().Fill(0xFF);
            }

            fixed (byte* s = snapshot, m = summary, w = window, a = sinceStart)
            {
                Assert.Equal(Ok, ((delegate* unmanaged<long, int, NativeSnapshot*, int>)&NativeApi.ModelLayerSnapshot)(handle, 1, (NativeSnapshot*)s));
                Assert.Equal(Ok, Call(&NativeApi.ModelSummary, handle, null, (NativeModelBalance*)m, (NativeLayerBalance*)w, (NativeLayerBalance*)a));
            }

            Assert.Equal(new byte[4], snapshot[156..]);
            for (var layer = 0; layer < Layers; layer++)
            {
                var at = (layer * sizeof(NativeLayerBalance)) + 68;
                Assert.Equal(new byte[4], window[at..(at + 4)]);
                Assert.Equal(new byte[4], sinceStart[at..(at + 4)]);
            }
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }

    /// <summary>
    /// A finish whose read fails (on CUDA a wait that a device fault fails, which the read's release then fails again)
    /// returns the device error and frees the handle; no exception leaves the C call, which would end the process.
    /// </summary>
    [Fact]
    public void AFinishWhoseReadFailsReturnsTheDeviceErrorAndFreesTheRead()
    {
        const int Layers = 2, Experts = 8, Tokens = 4, TopK = 2;
        var handle = Create("cpu", Layers, Experts, 0, 0, -1f);
        try
        {
            Assert.Equal(Ok, Record(handle, [.. Enumerable.Range(0, Layers * Tokens * TopK).Select(i => i % Experts)], Layers, Tokens, TopK, 0, null, null, null));
            long read;
            Assert.Equal(Ok, ((delegate* unmanaged<long, int, int*, IntPtr, long*, int>)&NativeApi.ModelReadBegin)(handle, 0, null, 0, &read));
            NativeApi.ModelReads[read].Read.Reading.BeforeRelease = static () => throw new InvalidOperationException("cuEventSynchronize failed: an illegal memory access was encountered.");

            NativeModelBalance summary;
            var status = ((delegate* unmanaged<long, NativeModelBalance*, NativeLayerBalance*, NativeLayerBalance*, ulong*, int, int>)&NativeApi.ModelReadFinish)(read, &summary, null, null, null, 0);

            Assert.Equal(DeviceError, status);
            Assert.Equal("cuEventSynchronize failed: an illegal memory access was encountered.", Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)&NativeApi.LastError)()));
            Assert.False(NativeApi.ModelReads.ContainsKey(read));
            Assert.Equal(InvalidHandle, Call(&NativeApi.ModelReadDestroy, read));
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }

    /// <summary>
    /// A model's C figures are the direct model's, each field compared with the property it is named for (not through
    /// NativeModelBalance.From or NativeLayerBalance.From, which both sides would share), on steps where the window and
    /// the whole run disagree (layer 0 the worst since the start, layer 2 in the window), so that a field filled from the
    /// other span, or from another statistic, shows; the layers' per-expert reads write exactly `experts` values, refuse
    /// a layer past the last and a short dst; moegs_model_read refuses its own arguments with every out as it was.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void AModelsFiguresAreTheDirectModelsFieldByField(string accelerator)
    {
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = Window, ExpertCapacity = 3, UtilizationDecay = 0.5f };
        using var direct = new ModelRoutingStats(options);
        var handle = Create(accelerator, Layers, Experts, 3, Window, 0.5f);
        try
        {
            foreach (var (ids, losses, zLosses) in SkewedSteps())
            {
                Assert.Equal(Ok, Record(handle, ids, Layers, Tokens, TopK, 0, null, losses, zLosses));
                direct.RecordStep(ids, Tokens, TopK, 0, losses, zLosses);
            }

            var expected = direct.Summary();
            Assert.True(expected.Window.WorstLayer != expected.SinceStart.WorstLayer && expected.Window.MinBalancedness != expected.Window.MedianBalancedness, "the steps do not set the window apart");
            var (summary, window, sinceStart) = Summary(handle, null);
            AssertBalance(expected, Experts, summary);
            AssertLayers(expected.Window.Layers, window);
            AssertLayers(expected.SinceStart.Layers, sinceStart);

            // moegs_model_read over experts (no placement), with the totals of a model that drops slots.
            var read = Read(handle, recentSteps: 1, null);
            AssertBalance(expected, Experts, read.Summary);
            AssertLayers(expected.Window.Layers, read.Window);
            AssertLayers(expected.SinceStart.Layers, read.SinceStart);
            AssertBalance(direct.Summary(1), Experts, read.Recent);
            for (var l = 0; l < Layers; l++)
            {
                using var layer = direct.Layer(l);
                var totals = read.Totals[l];
                Assert.Equal(
                    (layer.TotalRoutings, layer.TotalTokens, layer.TokensDropped, layer.RoutedSlots, layer.SlotsDropped, layer.InvalidExpertIds, layer.AverageLoadBalanceLoss, layer.AverageRouterZLoss, layer.RoutingEfficiency),
                    (totals.TotalRoutings, totals.TotalTokens, totals.TokensDropped, totals.RoutedSlots, totals.SlotsDropped, totals.InvalidExpertIds, totals.AverageLoadBalanceLoss, totals.AverageRouterZLoss, totals.RoutingEfficiency));
                Assert.True(totals.SlotsDropped > 0 && totals.AverageLoadBalanceLoss != totals.AverageRouterZLoss, "the totals' figures coincide");

                // The per-expert reads: `experts` values, into a dst one larger, whose last value stays.
                var counts = Enumerable.Repeat(77ul, Experts + 1).ToArray();
                var (utilization, decayed) = (Enumerable.Repeat(7f, Experts + 1).ToArray(), Enumerable.Repeat(7f, Experts + 1).ToArray());
                fixed (ulong* c = counts)
                fixed (float* u = utilization, d = decayed)
                {
                    Assert.Equal(Ok, ((delegate* unmanaged<long, int, ulong*, int, int>)&NativeApi.ModelLayerExpertCounts)(handle, l, c, Experts + 1));
                    Assert.Equal(Ok, ((delegate* unmanaged<long, int, float*, int, int>)&NativeApi.ModelLayerExpertUtilization)(handle, l, u, Experts + 1));
                    Assert.Equal(Ok, ((delegate* unmanaged<long, int, float*, int, int>)&NativeApi.ModelLayerDecayedUtilization)(handle, l, d, Experts + 1));
                }

                Assert.Equal([.. layer.ExpertTokenCounts, 77ul], counts);
                Assert.Equal([.. layer.ExpertUtilization, 7f], utilization);
                Assert.Equal([.. layer.DecayedExpertUtilization, 7f], decayed);
                Assert.NotEqual(utilization, decayed);
                Assert.True(counts[Experts - 1] > 0, "the last expert's count is 0");
            }

            var before = Reads(handle);
            var kept = Enumerable.Repeat(77ul, Experts).ToArray();
            fixed (ulong* c = kept)
            {
                var layerCounts = (delegate* unmanaged<long, int, ulong*, int, int>)&NativeApi.ModelLayerExpertCounts;
                Refused(layerCounts(handle, Layers, c, Experts), InvalidArgument, "layer = 3", "[0, 2]");
                Refused(layerCounts(handle, -1, c, Experts), InvalidArgument, "layer = -1", "[0, 2]");
                Refused(((delegate* unmanaged<long, int, float*, int, int>)&NativeApi.ModelLayerExpertUtilization)(handle, Layers, (float*)c, Experts), InvalidArgument, "layer = 3", "[0, 2]");
                Refused(layerCounts(handle, 0, c, Experts - 1), InvalidArgument, "capacity = 7");
                Refused(((delegate* unmanaged<long, int, float*, int, int>)&NativeApi.ModelLayerDecayedUtilization)(handle, 0, (float*)c, Experts - 1), InvalidArgument, "capacity = 7");
            }

            Assert.All(kept, value => Assert.Equal(77ul, value));

            // moegs_model_read's own refusals: a recent_steps out of range, a NULL recent_out it needs, a short array given alone.
            var modelRead = (delegate* unmanaged<long, int, int*, NativeModelBalance*, NativeLayerBalance*, NativeLayerBalance*, NativeModelBalance*, NativeLayerBalance*, NativeLayerTotals*, ulong*, ulong*, int, int>)&NativeApi.ModelRead;
            var untouched = new NativeModelBalance { Steps = ulong.MaxValue };
            NativeModelBalance model = untouched, recent = untouched;
            var load = Enumerable.Repeat(77ul, Layers * Experts).ToArray();
            fixed (ulong* l = load)
            {
                Refused(modelRead(handle, -1, null, &model, null, null, &recent, null, null, null, null, 0), InvalidArgument, "recent_steps = -1");
                Refused(modelRead(handle, Window + 1, null, &model, null, null, &recent, null, null, null, null, 0), InvalidArgument, "recent_steps = 5");
                Refused(modelRead(handle, 2, null, &model, null, null, null, null, null, null, null, 0), InvalidArgument, "recent_out is NULL with recent_steps = 2");
                Refused(modelRead(handle, 0, null, &model, null, null, null, null, null, l, null, (Layers * Experts) - 1), InvalidArgument, "capacity = 23", "window_load");
                Refused(modelRead(handle, 0, null, &model, null, null, null, null, null, null, l, (Layers * Experts) - 1), InvalidArgument, "capacity = 23", "expert_counts");
            }

            Assert.Equal((untouched, untouched), (model, recent));
            Assert.All(load, value => Assert.Equal(77ul, value));
            Assert.Equal(before, Reads(handle));

            AssertAcceleratorNamed(&NativeApi.ModelAccelerator, handle, accelerator, "model");
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }

    /// <summary>
    /// moegs_model_read_begin, _ready and _finish: the finish writes what moegs_model_summary over the newest steps and
    /// moegs_model_window_load give (`layers * experts` values into a larger dst); a finish refused for its arguments
    /// keeps the read for the next finish; a refused begin writes 0 to *read, a failed ready 0 to *arrived; a free
    /// that fails after the results were written is the call's device error.
    /// </summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void AReadBegunWithoutWaitingFinishesAsTheSummaryOfItsSteps(string accelerator)
    {
        var options = new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = Window };
        using var direct = new ModelRoutingStats(options);
        var handle = Create(accelerator, Layers, Experts, 0, Window, -1f);
        var begin = (delegate* unmanaged<long, int, int*, IntPtr, long*, int>)&NativeApi.ModelReadBegin;
        var ready = (delegate* unmanaged<long, int*, int>)&NativeApi.ModelReadReady;
        var finish = (delegate* unmanaged<long, NativeModelBalance*, NativeLayerBalance*, NativeLayerBalance*, ulong*, int, int>)&NativeApi.ModelReadFinish;
        try
        {
            foreach (var (ids, _, _) in SkewedSteps())
            {
                Assert.Equal(Ok, Record(handle, ids, Layers, Tokens, TopK, 0, null, null, null));
                direct.RecordStep(ids, Tokens, TopK);
            }

            int[] ranks = [0, 0, 1, 1, 2, 2, 3, 3];
            long read = 42;
            fixed (int* r = ranks)
            {
                Refused(begin(handle, -1, r, 0, &read), InvalidArgument, "recent_steps = -1");
                Assert.Equal(0, read);
                read = 42;
                Refused(begin(handle, 0, r, 0x10, &read), InvalidArgument, "stream = 0x10", "pass NULL");
                Assert.Equal(0, read);
                Assert.Equal(Ok, begin(handle, 2, r, 0, &read));
            }

            var arrived = 7;
            Assert.Equal(Ok, ready(read, &arrived));
            Assert.Equal(1, arrived);
            arrived = 7;
            Refused(ready(0, &arrived), InvalidHandle, "handle 0 is not a live pending model read");
            Assert.Equal(0, arrived);

            NativeModelBalance summary;
            var (window, sinceStart) = (new NativeLayerBalance[Layers], new NativeLayerBalance[Layers]);
            var load = Enumerable.Repeat(77ul, (Layers * Experts) + 1).ToArray();
            fixed (NativeLayerBalance* w = window, s = sinceStart)
            fixed (ulong* l = load)
            {
                Refused(finish(read, &summary, w, s, l, (Layers * Experts) - 1), InvalidArgument, "capacity = 23", "window_load");
                Assert.All(load, value => Assert.Equal(77ul, value));
                Assert.Equal(Ok, finish(read, &summary, w, s, l, load.Length));
            }

            var expected = direct.Summary(2, ranks);
            AssertBalance(expected, 4, summary);
            AssertLayers(expected.Window.Layers, window);
            AssertLayers(expected.SinceStart.Layers, sinceStart);
            Assert.Equal([.. direct.WindowLoad(), 77ul], load);
            Assert.Equal(InvalidHandle, Call(&NativeApi.ModelReadDestroy, read));

            // A read whose results are written and whose free then fails (a device fault on CUDA): the call's device error.
            Assert.Equal(Ok, begin(handle, 0, null, 0, &read));
            var written = new NativeModelBalance { Steps = ulong.MaxValue };
            var at = (IntPtr)(&written);
            NativeApi.ModelReads[read].Read.Reading.BeforeRelease = () =>
            {
                if (((NativeModelBalance*)at)->Steps != ulong.MaxValue)
                {
                    throw new InvalidOperationException("cuEventDestroy failed: an illegal memory access was encountered.");
                }
            };
            Assert.Equal(DeviceError, finish(read, &written, null, null, null, 0));
            Assert.Equal("cuEventDestroy failed: an illegal memory access was encountered.", Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)&NativeApi.LastError)()));
            Assert.Equal(direct.Summary().Steps, written.Steps);
            Assert.False(NativeApi.ModelReads.ContainsKey(read));
        }
        finally
        {
            Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
        }
    }

    /// <summary>
    /// Eight steps, layers packed: layer 0 routes every slot to expert 0 in the first four and evenly after; layer 2
    /// evenly, then half its slots to expert 1 in the last four (the window); layer 1 evenly throughout. Each layer's
    /// losses differ from its z-losses.
    /// </summary>
    private static IEnumerable<(int[] Ids, float[] Losses, float[] ZLosses)> SkewedSteps()
    {
        for (var step = 0; step < 2 * Window; step++)
        {
            var ids = new int[Layers * Tokens * TopK];
            for (var l = 0; l < Layers; l++)
            {
                for (var s = 0; s < Tokens * TopK; s++)
                {
                    var even = (s + step) % Experts;
                    ids[(l * Tokens * TopK) + s] = (l, step < Window) switch
                    {
                        (0, true) => 0,
                        (2, false) => s % 2 == 0 ? 1 : even,
                        _ => even,
                    };
                }
            }

            yield return (ids, [.. Enumerable.Range(0, Layers).Select(l => 0.5f + (0.25f * l) + (0.125f * step))], [.. Enumerable.Range(0, Layers).Select(l => 0.01f * (l + 1))]);
        }
    }

    /// <summary>Each field of <paramref name="actual"/> is the figure of <paramref name="expected"/> it is named for.</summary>
    private static void AssertBalance(ModelRoutingSummary expected, int entries, NativeModelBalance actual)
    {
        var (w, s) = (expected.Window, expected.SinceStart);
        Assert.Equal((expected.Steps, expected.WindowSteps, entries), (actual.Steps, actual.WindowSteps, actual.Entries));
        Assert.Equal(
            (w.MinBalancedness, w.P10Balancedness, w.MedianBalancedness, w.MeanBalancedness, w.TokenWeightedBalancedness, w.MaxBalancedness, w.WorstLayer, w.BestLayer),
            (actual.WindowMinBalancedness, actual.WindowP10Balancedness, actual.WindowMedianBalancedness, actual.WindowMeanBalancedness, actual.WindowTokenWeightedBalancedness, actual.WindowMaxBalancedness, actual.WindowWorstLayer, actual.WindowBestLayer));
        Assert.Equal(
            (s.MinBalancedness, s.P10Balancedness, s.MedianBalancedness, s.MeanBalancedness, s.TokenWeightedBalancedness, s.MaxBalancedness, s.WorstLayer, s.BestLayer),
            (actual.SinceStartMinBalancedness, actual.SinceStartP10Balancedness, actual.SinceStartMedianBalancedness, actual.SinceStartMeanBalancedness, actual.SinceStartTokenWeightedBalancedness, actual.SinceStartMaxBalancedness, actual.SinceStartWorstLayer, actual.SinceStartBestLayer));
    }

    /// <summary>Each layer's struct holds the <see cref="LayerBalance"/> figure each field is named for.</summary>
    private static void AssertLayers(IReadOnlyList<LayerBalance> expected, NativeLayerBalance[] actual)
    {
        Assert.Equal(expected.Count, actual.Length);
        for (var l = 0; l < actual.Length; l++)
        {
            var (e, a) = (expected[l], actual[l]);
            Assert.Equal((e.Load, e.MeanLoad, e.MaxLoad, e.MinLoad, e.Balancedness, e.MaxMeanRatio, e.CoefficientOfVariation), (a.Load, a.MeanLoad, a.MaxLoad, a.MinLoad, a.Balancedness, a.MaxMeanRatio, a.Cv));
            Assert.Equal((e.HottestExpert, e.ColdestExpert, e.DeadExperts, e.GiniCoefficient, e.Top10PercentShare), (a.Hottest, a.Coldest, a.Dead, a.Gini, a.Top10Share));
        }
    }

    private static long Create(string accelerator, int layers, int experts, int capacity, int window, float decay)
    {
        var status = Create(accelerator, layers, experts, capacity, window, decay, out var handle);
        Assert.True(status == Ok, Marshal.PtrToStringUTF8(((delegate* unmanaged<IntPtr>)&NativeApi.LastError)()));
        return handle;
    }

    private static int Create(string accelerator, int layers, int experts, int capacity, int window, float decay, out long handle, uint flags = 0)
    {
        var name = Encoding.UTF8.GetBytes(accelerator + "\0");
        long h = 42;
        int status;
        fixed (byte* p = name)
        {
            status = flags == 0
                ? ((delegate* unmanaged<byte*, int, int, int, int, float, long*, int>)&NativeApi.ModelCreate)(p, layers, experts, capacity, window, decay, &h)
                : ((delegate* unmanaged<byte*, int, int, int, int, float, uint, long*, int>)&NativeApi.ModelCreateWithFlags)(p, layers, experts, capacity, window, decay, flags, &h);
        }

        handle = h;
        return status;
    }

    private static int Record(long handle, int[] ids, int layers, int tokens, int topK, long stride, int? valid, float[]? losses, float[]? zLosses, bool nullIds = false, long tokenStride = 0)
    {
        var count = valid ?? 0;
        fixed (int* i = ids)
        fixed (float* l = losses, z = zLosses)
        {
            return RecordIds(handle, nullIds ? 0 : (IntPtr)i, 0, layers, tokens, topK, stride, tokenStride, valid is null ? 0 : (IntPtr)(&count), (IntPtr)l, (IntPtr)z);
        }
    }

    /// <summary>moegs_model_record_strided with ids of <paramref name="idType"/> (moegs_id_type) at <paramref name="ids"/>, on no stream.</summary>
    private static int RecordIds(long handle, IntPtr ids, int idType, int layers, int tokens, int topK, long stride, long tokenStride, IntPtr valid, IntPtr losses, IntPtr zLosses) =>
        ((delegate* unmanaged<long, IntPtr, int, int, int, int, long, long, IntPtr, IntPtr, IntPtr, IntPtr, int>)&NativeApi.ModelRecord)(
            handle, ids, idType, layers, tokens, topK, stride, tokenStride, valid, losses, zLosses, 0);

    private static ulong[] WindowLoad(long handle)
    {
        Assert.Equal(Ok, WindowLoad(handle, out var load, Layers * Experts));
        return load;
    }

    private static int WindowLoad(long handle, out ulong[] load, int capacity)
    {
        load = new ulong[Layers * Experts];
        fixed (ulong* p = load)
        {
            return ((delegate* unmanaged<long, ulong*, int, int>)&NativeApi.ModelWindowLoad)(handle, p, capacity);
        }
    }

    private static int RecentWindowLoad(long handle, int recentSteps, out ulong[] load, int capacity)
    {
        load = new ulong[Layers * Experts];
        fixed (ulong* p = load)
        {
            return ((delegate* unmanaged<long, int, ulong*, int, int>)&NativeApi.ModelRecentWindowLoad)(handle, recentSteps, p, capacity);
        }
    }

    private sealed record ModelRead(
        NativeModelBalance Summary, NativeLayerBalance[] Window, NativeLayerBalance[] SinceStart, NativeModelBalance Recent, NativeLayerBalance[] RecentWindow,
        NativeLayerTotals[] Totals, ulong[] WindowLoad, ulong[] Counts);

    /// <summary>moegs_model_read with every part asked.</summary>
    private static ModelRead Read(long handle, int recentSteps, int[]? ranks)
    {
        var (window, sinceStart, recentWindow) = (new NativeLayerBalance[Layers], new NativeLayerBalance[Layers], new NativeLayerBalance[Layers]);
        var totals = new NativeLayerTotals[Layers];
        var (load, counts) = (new ulong[Layers * Experts], new ulong[Layers * Experts]);
        NativeModelBalance summary, recent;
        fixed (int* r = ranks)
        fixed (NativeLayerBalance* w = window, s = sinceStart, rw = recentWindow)
        fixed (NativeLayerTotals* t = totals)
        fixed (ulong* l = load, c = counts)
        {
            Assert.Equal(Ok, ((delegate* unmanaged<long, int, int*, NativeModelBalance*, NativeLayerBalance*, NativeLayerBalance*, NativeModelBalance*, NativeLayerBalance*, NativeLayerTotals*, ulong*, ulong*, int, int>)&NativeApi.ModelRead)(
                handle, recentSteps, r, &summary, w, s, &recent, rw, t, l, c, load.Length));
        }

        return new ModelRead(summary, window, sinceStart, recent, recentWindow, totals, load, counts);
    }

    private static int RecentSummary(long handle, int recentSteps, int[] ranks, out NativeModelBalance summary, out NativeLayerBalance[] window)
    {
        window = new NativeLayerBalance[Layers];
        fixed (int* r = ranks)
        fixed (NativeLayerBalance* w = window)
        fixed (NativeModelBalance* s = &summary)
        {
            return ((delegate* unmanaged<long, int, int*, NativeModelBalance*, NativeLayerBalance*, NativeLayerBalance*, int>)&NativeApi.ModelRecentSummary)(handle, recentSteps, r, s, w, null);
        }
    }

    private static (NativeModelBalance Summary, NativeLayerBalance[] Window, NativeLayerBalance[] SinceStart) Summary(long handle, int[]? ranks)
    {
        Assert.Equal(Ok, Summary(handle, ranks, out var result));
        return result;
    }

    private static int Summary(long handle, int[]? ranks, out (NativeModelBalance, NativeLayerBalance[], NativeLayerBalance[]) result)
    {
        NativeModelBalance summary;
        var window = new NativeLayerBalance[Layers];
        var sinceStart = new NativeLayerBalance[Layers];
        int status;
        fixed (int* r = ranks)
        fixed (NativeLayerBalance* w = window, s = sinceStart)
        {
            status = Call(&NativeApi.ModelSummary, handle, r, &summary, w, s);
        }

        result = (summary, window, sinceStart);
        return status;
    }

    private static NativeModelArrays DeviceArrays(long handle)
    {
        NativeModelArrays arrays;
        Assert.Equal(Ok, DeviceArrays(handle, 0, &arrays));
        return arrays;
    }

    private static int DeviceArrays(long handle, IntPtr stream, NativeModelArrays* arrays) =>
        ((delegate* unmanaged<long, IntPtr, NativeModelArrays*, int>)&NativeApi.ModelDeviceArrays)(handle, stream, arrays);

    private static NativeSnapshot LayerSnapshot(long handle, int layer)
    {
        Assert.Equal(Ok, LayerSnapshot(handle, layer, out var snapshot));
        return snapshot;
    }

    private static int LayerSnapshot(long handle, int layer, out NativeSnapshot snapshot)
    {
        NativeSnapshot s;
        var status = ((delegate* unmanaged<long, int, NativeSnapshot*, int>)&NativeApi.ModelLayerSnapshot)(handle, layer, &s);
        snapshot = s;
        return status;
    }

    private static int Call(delegate* unmanaged<long, int> function, long handle) => function(handle);

    private static int Call(delegate* unmanaged<long, ulong*, int, int> function, long handle, ulong* destination, int capacity) =>
        function(handle, destination, capacity);

    private static int Call(
        delegate* unmanaged<long, int*, NativeModelBalance*, NativeLayerBalance*, NativeLayerBalance*, int> function,
        long handle,
        int* ranks,
        NativeModelBalance* summary,
        NativeLayerBalance* window,
        NativeLayerBalance* sinceStart) =>
        function(handle, ranks, summary, window, sinceStart);
}
