using MoeGpuStats.Collections;

namespace MoeGpuStats.Tests.Collections;

/// <summary>
/// <see cref="RingWindow{T}"/> on its own: what the latency window and a merge's histories keep, read every way the
/// library reads it (indexer, enumerator, span copy), against a list of the newest values written out in the test.
/// </summary>
public sealed class RingWindowTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(7)]
    public void TheWindowHoldsTheNewestValuesOldestFirstWhileItWrapsAround(int capacity)
    {
        var window = new RingWindow<int>(capacity);
        var added = new List<int>();
        for (var value = 100; value < 100 + (3 * capacity) + 2; value++)
        {
            var full = window.Add(value, out var evicted);

            Assert.Equal(added.Count >= capacity, full);
            Assert.Equal(full ? added[^capacity] : 0, evicted);
            added.Add(value);
            var newest = added.TakeLast(capacity).ToArray();
            Assert.Equal(capacity, window.Capacity);
            Assert.Equal(newest.Length, window.Count);
            Assert.Equal(newest, Enumerable.Range(0, window.Count).Select(i => window[i]));
            Assert.Equal(newest, window);
            var copied = Enumerable.Repeat(-1, capacity + 1).ToArray();
            window.CopyTo(copied);
            Assert.Equal(newest, copied[..newest.Length]);
            Assert.All(copied[newest.Length..], untouched => Assert.Equal(-1, untouched));
        }
    }

    [Fact]
    public void AClearedWindowStartsAfresh()
    {
        var window = new RingWindow<int>(3);
        foreach (var value in new[] { 1, 2, 3, 4 })
        {
            window.Add(value, out _);
        }

        window.Clear();

        Assert.Empty(window);
        Assert.False(window.Add(5, out _));
        Assert.False(window.Add(6, out _));
        Assert.Equal(new[] { 5, 6 }, window);
        Assert.Equal(6, window[1]);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    public void ACapacityBelowOneIsRejected(int capacity)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new RingWindow<double>(capacity));
        Assert.Equal($"capacity is {capacity}; a window holds at least 1 value. (Parameter 'capacity')", error.Message);
    }

    [Fact]
    public void AnIndexOutsideTheValuesIsRejected()
    {
        var window = new RingWindow<double>(4);
        Assert.Equal("index is 0; there is no value yet. (Parameter 'index')", Assert.Throws<ArgumentOutOfRangeException>(() => window[0]).Message);

        foreach (var value in new[] { 1.0, 2.0, 3.0, 4.0, 5.0 })
        {
            window.Add(value, out _);
        }

        Assert.Equal("index is 4; give 0 to 3 (4 values). (Parameter 'index')", Assert.Throws<ArgumentOutOfRangeException>(() => window[4]).Message);
        Assert.Equal("index is -1; give 0 to 3 (4 values). (Parameter 'index')", Assert.Throws<ArgumentOutOfRangeException>(() => window[-1]).Message);
    }
}
