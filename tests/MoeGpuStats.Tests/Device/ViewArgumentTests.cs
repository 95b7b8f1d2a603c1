using System.Text.Json;
using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Device;

namespace MoeGpuStats.Tests.Device;

/// <summary>Device views given as arguments: a view of a disposed buffer is refused before anything reads it, and an empty batch may come as a default view.</summary>
public sealed class ViewArgumentTests
{
    public static TheoryData<string> Engines => ["managed", "cpu"];

    /// <summary>A view of a freed buffer is refused naming the argument, the statistics unchanged (on the CPU accelerator a kernel reading it ended the process).</summary>
    [Theory]
    [MemberData(nameof(Engines))]
    public void ARecordFromAViewOfADisposedBufferIsRefused(string engine)
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var stats = engine == "managed"
            ? new RoutingStats(new RoutingStatsOptions { Experts = 4 })
            : RoutingStats.OnDevice(accelerator, new RoutingStatsOptions { Experts = 4 });
        stats.RecordRouting([0, 1, 2, 3], tokens: 2, topK: 2);
        var before = JsonSerializer.Serialize(stats);
        var view = Freed(accelerator, [0, 1]);

        var error = Assert.Throws<ArgumentException>(() => stats.RecordRouting(view, tokens: 1, topK: 2));

        Assert.Equal("topKExpertIds", error.ParamName);
        Assert.StartsWith("topKExpertIds is a view of a buffer that was disposed", error.Message);
        Assert.Equal(before, JsonSerializer.Serialize(stats));
    }

    [Fact]
    public void ADeviceEngineRefusesAViewOfADisposedBuffer()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var stats = new DeviceRoutingStats(accelerator, new RoutingStatsOptions { Experts = 4 });
        var error = Assert.Throws<ArgumentException>(() => stats.RecordRouting(Freed(accelerator, [0, 1]), tokens: 1, topK: 2));
        Assert.Equal("topKExpertIds", error.ParamName);
        using var snapshot = stats.Snapshot();
        Assert.Equal(0UL, snapshot.TotalRoutings);
    }

    /// <summary>Each of a step's views, ids, valid-token count and losses, is refused when its buffer was disposed, on both engines.</summary>
    [Theory]
    [InlineData("managed", "topKExpertIds")]
    [InlineData("managed", "validTokens")]
    [InlineData("managed", "loadBalanceLosses")]
    [InlineData("cpu", "topKExpertIds")]
    [InlineData("cpu", "validTokens")]
    [InlineData("cpu", "routerZLosses")]
    public void AStepFromAViewOfADisposedBufferIsRefused(string engine, string argument)
    {
        var accelerator = TestAccelerators.Require("cpu");
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 3 };
        using var model = engine == "managed" ? new ModelRoutingStats(options) : ModelRoutingStats.OnDevice(accelerator, options);
        using var ids = accelerator.Allocate1D([0, 1, 2, 3]);
        using var valid = accelerator.Allocate1D([2]);
        using var losses = accelerator.Allocate1D([0.5f, 0.25f]);
        model.RecordStep(ids.View, tokens: 2, topK: 1);
        var before = JsonSerializer.Serialize(model);

        var error = Assert.Throws<ArgumentException>(() => model.RecordStep(
            argument == "topKExpertIds" ? Freed(accelerator, [0, 1, 2, 3]) : ids.View,
            tokens: 2,
            topK: 1,
            validTokens: argument == "validTokens" ? Freed(accelerator, [2]) : valid.View,
            loadBalanceLosses: argument == "loadBalanceLosses" ? FreedLosses(accelerator) : losses.View,
            routerZLosses: argument == "routerZLosses" ? FreedLosses(accelerator) : losses.View));

        Assert.Equal(argument, error.ParamName);
        Assert.Contains("a view of a buffer that was disposed", error.Message);
        Assert.Equal(before, JsonSerializer.Serialize(model));
    }

    /// <summary>An empty batch may come as a default view: both engines record it as a batch without tokens (the managed engine tried to copy from it).</summary>
    [Fact]
    public void AnEmptyBatchFromADefaultViewRecordsAlikeOnBothEngines()
    {
        using var managed = new RoutingStats(new RoutingStatsOptions { Experts = 4 });
        using var device = RoutingStats.OnDevice(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = 4 });

        managed.RecordRouting(default(ArrayView<int>), tokens: 0, topK: 1);
        device.RecordRouting(default(ArrayView<int>), tokens: 0, topK: 1);

        Assert.Equal(1UL, managed.TotalRoutings);
        Assert.Equal(JsonSerializer.Serialize(device), JsonSerializer.Serialize(managed));
    }

    private static ArrayView<int> Freed(Accelerator accelerator, int[] values)
    {
        var buffer = accelerator.Allocate1D(values);
        var view = buffer.View;
        buffer.Dispose();
        return view;
    }

    private static ArrayView<float> FreedLosses(Accelerator accelerator)
    {
        var buffer = accelerator.Allocate1D([0.5f, 0.25f]);
        var view = buffer.View;
        buffer.Dispose();
        return view;
    }
}
