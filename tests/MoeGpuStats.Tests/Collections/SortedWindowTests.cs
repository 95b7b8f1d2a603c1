using MoeGpuStats.Collections;
using static System.FormattableString;

namespace MoeGpuStats.Tests.Collections;

/// <summary>
/// <see cref="SortedWindow"/> on its own, against a list sorted afresh after every change: inserts, replacements
/// that move a value up, down or not at all (duplicates included), loads from a wrapped ring, and the refusal of a
/// replacement whose evicted value is not there.
/// </summary>
public sealed class SortedWindowTests
{
    [Theory]
    [InlineData(1, 5)]
    [InlineData(8, 4)]
    [InlineData(50, 20)]
    public void InsertsAndReplacementsKeepTheValuesInAscendingOrder(int capacity, int distinct)
    {
        var random = new Random(capacity * distinct);
        var sorted = new SortedWindow(capacity);
        var values = new List<double>();
        int up = 0, down = 0, inPlace = 0;
        for (var change = 0; change < 40 * capacity; change++)
        {
            double value = random.Next(distinct);
            if (values.Count < capacity)
            {
                sorted.Insert(value);
                values.Add(value);
            }
            else
            {
                var evicted = values[random.Next(values.Count)];
                sorted.Replace(evicted, value);
                values.Remove(evicted);
                values.Add(value);
                if (value > evicted)
                {
                    up++;
                }
                else if (value < evicted)
                {
                    down++;
                }
                else
                {
                    inPlace++;
                }
            }

            values.Sort();
            Assert.Equal(values.Count, sorted.Count);
            Assert.Equal(values, Values(sorted));
        }

        Assert.True(up > 0 && down > 0 && inPlace > 0, $"moves up {up}, down {down}, in place {inPlace}");
    }

    [Fact]
    public void ALoadTakesAWrappedRingsValuesSorted()
    {
        var ring = new RingWindow<double>(5);
        foreach (var value in new[] { 9.0, 1, 7, 3, 3, 8, 0, 2 })
        {
            ring.Add(value, out _);
        }

        var sorted = new SortedWindow(5);
        sorted.Insert(100);
        sorted.Load(ring);

        Assert.Equal(5, sorted.Count);
        Assert.Equal(new[] { 0.0, 2, 3, 3, 8 }, Values(sorted));
    }

    [Theory]
    [InlineData(2.5)]
    [InlineData(7.0)]
    [InlineData(-1.0)]
    public void ReplacingAValueThatIsNotThereIsRefusedAndChangesNothing(double absent)
    {
        var sorted = new SortedWindow(4);
        foreach (var value in new[] { 1.0, 2, 3, 4 })
        {
            sorted.Insert(value);
        }

        var error = Assert.Throws<InvalidOperationException>(() => sorted.Replace(absent, 0.5));

        Assert.Equal(Invariant($"The value {absent} is not in the window."), error.Message);
        Assert.Equal(new[] { 1.0, 2, 3, 4 }, Values(sorted));
    }

    /// <summary>The window's values by rank, its <see cref="SortedWindow.Count"/> of them.</summary>
    private static double[] Values(SortedWindow sorted) => [.. Enumerable.Range(0, sorted.Count).Select(rank => sorted[rank])];
}
