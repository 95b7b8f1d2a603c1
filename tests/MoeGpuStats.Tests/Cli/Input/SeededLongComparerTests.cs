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
        // An equal id built another way (its two halves joined) hashes the same, and a set finds it.
        Assert.All(Enumerable.Range(0, 1_000), i => Assert.Equal(comparer.GetHashCode(ids[i]), comparer.GetHashCode(((long)i << 32) | (uint)i)));
        var set = new HashSet<long>(ids, comparer);
        Assert.All(Enumerable.Range(0, 1_000), i => Assert.Contains(((long)i << 32) | (uint)i, set));
        Assert.True(comparer.Equals(ids[7], 7 * 4_294_967_297L));
        Assert.False(comparer.Equals(ids[7], ids[8]));
    }
}
