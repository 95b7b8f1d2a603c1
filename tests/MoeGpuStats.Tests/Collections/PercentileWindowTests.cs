using MoeGpuStats.Collections;

namespace MoeGpuStats.Tests.Collections;

/// <summary>
/// <see cref="PercentileWindow"/> on its own, at capacities other than the latency window's 1,000: a catch-up whose logged
/// changes cross the moment the window fills (inserts, then replacements), clears with changes still logged, against a list
/// of the newest values sorted in the test.
/// </summary>
public sealed class PercentileWindowTests
{
    /// <summary>
    /// Values added and a clear before any read, then enough to fill the window and replace in one catch-up: only the
    /// inserts since the clear are replayed as inserts (those before it are gone with it), the rest as replacements.
    /// </summary>
    [Fact]
    public void ACatchUpAfterAClearReplaysOnlyTheChangesSinceTheClear()
    {
        var window = new PercentileWindow(4);
        foreach (var value in new[] { 10.0, 20, 30 })
        {
            window.Add(value);
        }

        window.Clear();
        foreach (var value in new[] { 5.0, 1, 4, 2, 3, 0 })
        {
            window.Add(value);
        }

        Assert.Equal(new[] { 4.0, 2, 3, 0 }, window.Recent);
        Assert.Equal(new[] { 0.0, 2, 3, 4 }, OrderStatistics(window));
    }

    /// <summary>Random values (few distinct, so ties), reads after random gaps (up to past the replay limit) and clears at random.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(PercentileWindow.ReplayLimit + 6)]
    public void OrderStatisticsAreTheNewestValuesSortedWhateverTheGapsAndClears(int capacity)
    {
        var random = new Random(capacity);
        var window = new PercentileWindow(capacity);
        var newest = new List<double>();
        for (var change = 0; change < 60 * capacity + 400; change++)
        {
            var roll = random.Next(100);
            if (roll < 3)
            {
                window.Clear();
                newest.Clear();
            }
            else if (roll < 15 && newest.Count > 0)
            {
                var sorted = newest.Order().ToArray();
                Assert.Equal(sorted, OrderStatistics(window));
            }
            else
            {
                // One value, or a run of up to twice the changes a catch-up replays.
                var adds = random.Next(2) == 0 ? 1 : random.Next(1, 2 * PercentileWindow.ReplayLimit);
                for (var i = 0; i < adds; i++)
                {
                    double value = random.Next(6);
                    window.Add(value);
                    newest.Add(value);
                    if (newest.Count > capacity)
                    {
                        newest.RemoveAt(0);
                    }
                }
            }

            Assert.Equal(newest.Count, window.Count);
            Assert.Equal(newest, window.Recent);
        }
    }

    private static double[] OrderStatistics(PercentileWindow window) => [.. Enumerable.Range(0, window.Count).Select(window.OrderStatistic)];
}
