namespace MoeGpuStats.Tests.Device;

/// <summary>
/// Copies from the host to the device stay on the statistics' stream whatever the context's page locking:
/// under <c>PageLockingMode.Aggressive</c> ILGPU 1.5.3's own <c>CopyFromCPU</c> goes to the default stream,
/// unordered with the statistics' launches on CUDA (DeviceMemory.CopyFromHost). Host ids, losses, a
/// decision's histogram and a placement recorded through such an accelerator give the managed engine's
/// figures. On the CPU accelerator every copy is synchronous, so only a GPU can show a misordered copy.
/// </summary>
public sealed class HostCopyTests
{
    public static TheoryData<string> Kinds => ["cpu" + TestAccelerators.AggressivePageLocking, "cuda" + TestAccelerators.AggressivePageLocking, "opencl" + TestAccelerators.AggressivePageLocking];

    [Theory]
    [MemberData(nameof(Kinds))]
    public void HostInputsUnderAggressivePageLockingRecordAsTheManagedEngine(string kind)
    {
        var accelerator = TestAccelerators.Require(kind);
        var options = new ModelRoutingStatsOptions { Layers = 3, Experts = 8, Window = 4, ExpertCapacity = 6 };
        using var model = ModelRoutingStats.OnDevice(accelerator, options);
        using var managedModel = new ModelRoutingStats(options);
        var layerOptions = new RoutingStatsOptions { Experts = 8, ExpertCapacity = 6 };
        using var layer = RoutingStats.OnDevice(accelerator, layerOptions);
        using var managedLayer = new RoutingStats(layerOptions);
        var random = new Random(3);
        int[] ranks = [0, 1, 0, 1, 2, 3, 2, 3];
        // One array of each reused for every step: a copy still in flight would read the next step's values.
        var ids = new int[3 * 10 * 2];
        var losses = new float[3];
        for (var step = 0; step < 9; step++)
        {
            for (var i = 0; i < ids.Length; i++)
            {
                ids[i] = random.Next(-1, 9);
            }

            for (var l = 0; l < losses.Length; l++)
            {
                losses[l] = 0.1f * (step + l);
            }

            model.RecordStep(ids, 10, 2, loadBalanceLosses: losses);
            managedModel.RecordStep(ids, 10, 2, loadBalanceLosses: losses);
            layer.RecordRouting(ids.AsSpan(0, 20), 10, 2);
            managedLayer.RecordRouting(ids.AsSpan(0, 20), 10, 2);
            var decision = new RoutingDecision { ExpertCapacities = [.. Enumerable.Range(0, 8).Select(_ => random.Next(0, 5))], TotalTokens = 20 };
            layer.RecordRouting(decision);
            managedLayer.RecordRouting(decision);
            Assert.Equal(Json(managedModel.Summary(ranks)), Json(model.Summary(ranks)));
        }

        Assert.Equal(managedModel.WindowLoad(), model.WindowLoad());
        Assert.Equal(managedLayer.ExpertTokenCounts, layer.ExpertTokenCounts);
        Assert.Equal(Json(managedLayer.Snapshot()), Json(layer.Snapshot()));
    }

    private static string Json(object value) => System.Text.Json.JsonSerializer.Serialize(value);
}
