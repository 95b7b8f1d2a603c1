namespace MoeGpuStats.Tests.Model;

/// <summary>
/// Ids at a token stride: <c>[tokens, layers, k]</c> as SGLang's (and some vLLM versions') routed-experts buffers
/// hold a step, and rows padded past k. Each layout records what the same ids packed record, on every
/// engine, from the host and from device views; strides that lay layers out otherwise are refused.
/// </summary>
public sealed partial class ModelRoutingStatsTests
{
    /// <summary>The layouts by name: the strides for a step of <c>tokens</c> rows of Options.Layers layers of k = 2.</summary>
    private static (long LayerStride, long TokenStride) Strides(string layout, int tokens) => layout switch
    {
        "tokens-layers-k" => (2, Options.Layers * 2),
        "tokens-layers-k-with-gaps" => (3, Options.Layers * 3 + 2),
        "layers-tokens-padded-k" => (0, 5),
        // Packed, with the token stride given as k rather than 0: the least stride taken.
        "layers-tokens-k-stride-given" => (0, 2),
        "layers-tokens-padded-k-with-gaps" => (tokens * 5 + 3, 5),
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, "no such layout"),
    };

    public static TheoryData<string, string> StridedLayouts
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (var engine in Engines)
            {
                foreach (var layout in new[] { "tokens-layers-k", "tokens-layers-k-with-gaps", "layers-tokens-padded-k", "layers-tokens-padded-k-with-gaps", "layers-tokens-k-stride-given" })
                {
                    data.Add(engine.Data, layout);
                }
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(StridedLayouts))]
    public void IdsAtATokenStrideRecordAsTheSameIdsPacked(string engine, string layout)
    {
        using var model = Create(engine, Options);
        using var packed = new ModelRoutingStats(Options);
        using var views = new DeviceIds(TestAccelerators.Require(engine == "managed" ? "cpu" : engine));
        var steps = ModelSteps.Random(Options.Layers, Options.Experts, topK: 2, count: 23, seed: 31);
        for (var s = 0; s < steps.Count; s++)
        {
            var step = steps[s];
            var (layerStride, tokenStride) = Strides(layout, step.Tokens);
            var resolved = layerStride == 0 ? step.Tokens * tokenStride : layerStride;
            var ids = ModelSteps.Laid(step, Options.Layers, resolved, tokenStride);
            if (s % 2 == 0)
            {
                // From the host, the valid rows only: the rows past them are never read.
                model.RecordStep(ids, step.Valid, step.TopK, resolved, step.LoadBalanceLosses, step.RouterZLosses, tokenStride);
            }
            else
            {
                views.Record(model, step, ids, layerStride, tokenStride);
            }

            Record(packed, step);
        }

        Assert.Equal(ModelSteps.Fingerprint(packed), ModelSteps.Fingerprint(model));
        Assert.Equal(ModelSteps.WindowLoad(Options, steps), model.WindowLoad());
    }

    [Theory]
    [MemberData(nameof(BadInputEngines))]
    public void StridesThatInterleaveLayersOtherwiseAreRefused(string engine)
    {
        using var model = Create(engine, BadInputOptions);
        var good = new int[BadInputOptions.Layers * 4 * 2];
        model.RecordStep(good, 4, 2);
        var before = ModelSteps.Fingerprint(model);

        AssertRefused<ArgumentOutOfRangeException>(() => model.RecordStep(good, 4, 2, tokenStride: -1), "tokenStride", "-1");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, tokenStride: 1), "tokenStride", "at least topK = 2");
        // Layer 1's rows would start inside layer 0's: neither one after another (>= 14) nor interleaved (<= (4 - 2) / 2).
        AssertRefused<ArgumentException>(
            () => model.RecordStep(new int[64], 4, 2, layerStride: 3, tokenStride: 4), "layerStride", "the layers lie neither one after another nor interleaved token by token. Layers one after another need layerStride >= (tokens - 1) * tokenStride + topK = 14");
        AssertRefused<ArgumentException>(() => model.RecordStep(new int[64], 4, 2, layerStride: 1, tokenStride: 6), "layerStride", "topK = 2 <= layerStride <= (tokenStride - topK) / (layers - 1) = 2");
        AssertRefused<ArgumentException>(() => model.RecordStep(new int[64], 4, 2, layerStride: 1, tokenStride: 3), "layerStride", "layerStride is 1 with tokenStride 3: the layers lie neither one after another nor interleaved");
        // No layer stride interleaves 3 layers of k = 2 in a token stride of 5: the rule names the token stride, not an empty range.
        AssertRefused<ArgumentException>(() => model.RecordStep(new int[64], 4, 2, layerStride: 2, tokenStride: 5), "layerStride", "layers interleaved, as [tokens, layers, topK], need tokenStride >= layers * topK = 6.");
        // [tokens, layers, k] of 4 tokens, 3 layers, k = 2: (3 - 1) * 2 + (4 - 1) * 6 + 2 = 24 ids.
        AssertRefused<ArgumentException>(() => model.RecordStep(new int[23], 4, 2, layerStride: 2, tokenStride: 6), "topKExpertIds", "and a token stride of 6 need 24.");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, tokenStride: long.MaxValue), "tokenStride", "passes the range of long");
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, layerStride: 2, tokenStride: long.MaxValue), "tokenStride", $"tokenStride is {long.MaxValue}: ");
        // Packed layers of 4 rows 2^60 apart: each layer fits a long, the three do not; the token stride given is named.
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 4, 2, tokenStride: 1L << 60), "tokenStride", $"tokenStride is {1L << 60}: 3 layers of tokens * topK = 4 * 2 at a layer stride of ");
        // One token a layer: its token stride spaces nothing, so a layer stride as large is the one named.
        AssertRefused<ArgumentException>(() => model.RecordStep(good, 1, 2, layerStride: 1L << 62, tokenStride: 1L << 62), "layerStride", $"layerStride is {1L << 62}: 3 layers of tokens * topK = 1 * 2 at a layer stride of ");
        Assert.Equal(before, ModelSteps.Fingerprint(model));

        // The same ids interleaved and packed record the same step.
        using var interleaved = Create(engine, BadInputOptions);
        int[] tokensFirst = [0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 1, 1, 2, 2, 3, 3];
        interleaved.RecordStep(tokensFirst, 4, 2, layerStride: 2, tokenStride: 6);
        model.Reset();
        model.RecordStep([0, 1, 6, 7, 4, 5, 1, 1, 2, 3, 0, 1, 6, 7, 2, 2, 4, 5, 2, 3, 0, 0, 3, 3], 4, 2);
        Assert.Equal(ModelSteps.Fingerprint(model), ModelSteps.Fingerprint(interleaved));
    }
}
