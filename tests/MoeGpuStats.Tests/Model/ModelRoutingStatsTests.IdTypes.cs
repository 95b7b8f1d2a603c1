using ILGPU.Runtime;

namespace MoeGpuStats.Tests.Model;

/// <summary>
/// Ids of type int64 (<c>torch.topk</c>'s) and int16 (vLLM's routed-experts capture), read where they
/// lie: each records what the same ids as int32 record, on every engine, packed and laid out
/// <c>[tokens, layers, k]</c>; an int64 id outside int32's range is invalid, whatever its low bits.
/// </summary>
public sealed partial class ModelRoutingStatsTests
{
    public static TheoryData<string, string> EnginesAndIdTypes
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var engine in Engines)
            {
                data.Add(engine.Data, "int64");
                data.Add(engine.Data, "int16");
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(EnginesAndIdTypes))]
    public void Int64AndInt16IdsRecordAsTheSameIdsAsInt32(string engine, string type)
    {
        using var model = Create(engine, Options);
        using var reference = new ModelRoutingStats(Options);
        var accelerator = TestAccelerators.Require(engine == "managed" ? "cpu" : engine);
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, topK: 2, count: 17, seed: 43);
        for (var s = 0; s < steps.Count; s++)
        {
            var step = steps[s];
            var interleaved = s % 2 == 1;
            var (layerStride, tokenStride) = interleaved ? (2L, Options.Layers * 2L) : (step.Stride, 2L);
            var ids = interleaved ? ModelSteps.Laid(step, Options.Layers, layerStride, tokenStride) : step.Ids;
            using var valid = accelerator.Allocate1D([step.Valid]);
            using var losses = accelerator.Allocate1D(step.LoadBalanceLosses);
            if (type == "int64")
            {
                using var view = accelerator.Allocate1D(ids.Select(id => (long)id).ToArray());
                model.RecordStep(view.View, step.Tokens, step.TopK, layerStride, valid.View, losses.View, tokenStride: tokenStride);
            }
            else
            {
                using var view = accelerator.Allocate1D(ids.Select(id => (short)id).ToArray());
                model.RecordStep(view.View, step.Tokens, step.TopK, layerStride, valid.View, losses.View, tokenStride: tokenStride);
            }

            accelerator.Synchronize();
            reference.RecordStep(step.Ids.AsSpan(0, (Options.Layers - 1) * step.Stride + step.Valid * step.TopK), step.Valid, step.TopK, step.Stride, step.LoadBalanceLosses);
        }

        Assert.Equal(ModelSteps.Fingerprint(reference), ModelSteps.Fingerprint(model));
    }

    [Theory]
    [MemberData(nameof(Engines))]
    public void AnInt64IdOutsideInt32sRangeIsInvalidWhateverItsLowBits(string engine)
    {
        var options = new ModelRoutingStatsOptions { Layers = 2, Experts = 4, Window = 3 };
        using var model = Create(engine, options);
        using var reference = new ModelRoutingStats(options);
        var accelerator = TestAccelerators.Require(engine == "managed" ? "cpu" : engine);
        // (1 << 32) | 1 would read as expert 1 if cut to 32 bits; -1 stays an empty slot; (1 << 32) - 1 would read as -1.
        long[] wide = [(1L << 32) | 1, 2, -1, -1, long.MinValue, 3, (1L << 32) - 1, 0, int.MaxValue + 1L, 1, int.MinValue - 1L, 2];
        int[] narrow = [int.MaxValue, 2, -1, -1, int.MaxValue, 3, int.MaxValue, 0, int.MaxValue, 1, int.MaxValue, 2];
        using var view = accelerator.Allocate1D(wide);
        model.RecordStep(view.View, tokens: 3, topK: 2);
        reference.RecordStep(narrow, tokens: 3, topK: 2);

        Assert.Equal(ModelSteps.Fingerprint(reference), ModelSteps.Fingerprint(model));
        Assert.Equal(2UL, model.Layer(0).InvalidExpertIds);
        Assert.Equal(3UL, model.Layer(1).InvalidExpertIds);
    }
}
