using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary>Pass ids a file gives are hashed with both halves apart: ids whose own hashes are all equal spread over the buckets.</summary>
public sealed class SeededLongComparerTests
{
    [Fact]
    public void IdsWhoseOwnHashesCollideHashApartAndStillCompareByValue()
    {
        // i × (2^32 + 1) has equal halves, so a long's own hash (their XOR) is 0 for every one of them.
        var ids = Enumerable.Range(0, 1_000).Select(i => i * 4_294_967_297L).ToArray();
        Assert.Single(ids.Select(id => id.GetHashCode()).Distinct());

        var comparer = SeededLongComparer.Instance;
        Assert.True(ids.Select(comparer.GetHashCode).Distinct().Count() > 990);
        Assert.All(ids, id => Assert.Equal(comparer.GetHashCode(id), comparer.GetHashCode(id + 0)));
        Assert.True(comparer.Equals(ids[7], 7 * 4_294_967_297L));
        Assert.False(comparer.Equals(ids[7], ids[8]));
    }
}
