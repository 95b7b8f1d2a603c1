using MoeGpuStats.Kernels.Model;

namespace MoeGpuStats.Tests.Kernels.Model;

/// <summary>The layout rules the host checks and the launcher share: extents, overflow, and which strides keep layers apart.</summary>
public sealed class ModelIdLayoutTests
{
    [Fact]
    public void ExtentsRunFromTheFirstIdToTheLastAndAreNullPastLong()
    {
        Assert.Equal(0, ModelIdLayout.LayerExtent(tokens: 0, topK: 8, tokenStride: 1000));
        Assert.Equal(8, ModelIdLayout.LayerExtent(tokens: 1, topK: 8, tokenStride: long.MaxValue));
        Assert.Equal((3 * 24) + 8, ModelIdLayout.LayerExtent(tokens: 4, topK: 8, tokenStride: 24));
        Assert.Null(ModelIdLayout.LayerExtent(tokens: 3, topK: 8, tokenStride: long.MaxValue / 2));

        // [tokens, layers, k] of 4 tokens, 3 layers, k = 8: the last layer's last token ends the buffer.
        Assert.Equal(4 * 3 * 8, ModelIdLayout.StepExtent(layers: 3, layerStride: 8, tokens: 4, topK: 8, tokenStride: 24));
        Assert.Equal(0, ModelIdLayout.StepExtent(layers: 1, layerStride: long.MaxValue, tokens: 0, topK: 8, tokenStride: 8));

        // No token reads no id, whatever the strides: an empty slice of a buffer laid out [tokens, layers, k] or [layers, tokens, k].
        Assert.Equal(0, ModelIdLayout.StepExtent(layers: 3, layerStride: 2, tokens: 0, topK: 2, tokenStride: 6));
        Assert.Equal(0, ModelIdLayout.StepExtent(layers: 58, layerStride: long.MaxValue, tokens: 0, topK: 8, tokenStride: 8));
        Assert.Null(ModelIdLayout.StepExtent(layers: 3, layerStride: long.MaxValue / 2, tokens: 1, topK: 8, tokenStride: 8));
    }

    [Theory]
    [InlineData(3, 4, 2, 8, 2, true)]     // [layers, tokens, k] packed
    [InlineData(3, 4, 2, 7, 2, false)]    // layer 1 starts on layer 0's last id
    [InlineData(3, 4, 2, 2, 6, true)]     // [tokens, layers, k]
    [InlineData(3, 4, 2, 2, 5, false)]    // a token's third layer runs into the next token
    [InlineData(3, 4, 2, 1, 6, false)]    // interleaved layers closer than k
    [InlineData(3, 4, 2, 3, 8, true)]     // interleaved with gaps
    [InlineData(3, 4, 2, 14, 4, true)]    // padded rows, layers one after another
    [InlineData(3, 4, 2, 13, 4, false)]
    [InlineData(1, 4, 2, 0, 2, true)]     // one layer: its stride is never used
    [InlineData(3, 0, 2, 0, 2, true)]     // no token: no row
    public void LayersApartAreThoseWhoseRowsShareNoId(long layers, long tokens, long topK, long layerStride, long tokenStride, bool disjoint)
    {
        Assert.Equal(disjoint, ModelIdLayout.Supported(layers, tokens, topK, layerStride, tokenStride));
        if (layers > 1 && tokens > 0)
        {
            // Against the rows themselves: the sets of ids each (layer, token) row covers.
            var seen = new HashSet<long>();
            var shared = false;
            for (var l = 0; l < layers; l++)
            {
                for (var t = 0; t < tokens; t++)
                {
                    for (var j = 0; j < topK; j++)
                    {
                        shared |= !seen.Add((l * layerStride) + (t * tokenStride) + j);
                    }
                }
            }

            Assert.Equal(disjoint, !shared);
        }
    }

    [Fact]
    public void AnOffsetCountsRowsAtTheTokenStride()
    {
        Assert.Equal(0, ModelIdLayout.Offset(0, 8, 24));
        Assert.Equal(7, ModelIdLayout.Offset(7, 8, 24));
        Assert.Equal(24, ModelIdLayout.Offset(8, 8, 24));
        Assert.Equal((2 * 24) + 3, ModelIdLayout.Offset(19, 8, 24));
    }
}
