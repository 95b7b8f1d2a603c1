using MoeGpuStats.Telemetry;

namespace MoeGpuStats.Tests.Telemetry;

/// <summary>
/// One collection reports one reading per publisher, however its publishers' callbacks interleave on the listener's
/// thread: a listener runs every publisher's instruments back to back, so a collection is one for all of them.
/// </summary>
public sealed class CollectionReadingTests
{
    /// <summary>
    /// Another publisher's reading that takes longer than <see cref="CollectionReading{T}.CollectionGap"/>, and fails
    /// or not, is work of the same collection, not a pause after it: the first publisher's next instrument reports
    /// the reading its first one did, and no second reading is taken.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AnotherPublishersSlowReadingDoesNotSplitTheCollection(bool fails)
    {
        var a = Publisher(out var aRoutings, out var aTokens);
        var b = new CollectionReading<Reading>(
            () =>
            {
                Thread.Sleep(CollectionReading<object>.CollectionGap + TimeSpan.FromMilliseconds(200));
                return fails ? throw new InvalidOperationException("the device failed") : new Reading(1);
            },
            TimeSpan.Zero);
        var bRoutings = b.ObserveOne(r => new System.Diagnostics.Metrics.Measurement<int>(r.Value));

        var routings = Value(aRoutings);
        if (fails)
        {
            Assert.Throws<InvalidOperationException>(() => Value(bRoutings));
        }
        else
        {
            Assert.Equal(1, Value(bRoutings));
        }

        Assert.Equal(routings, Value(aTokens));
        Assert.Equal(1, a.Taken);
    }

    /// <summary>
    /// A publisher created during a collection reports the instruments it has left there from that collection's
    /// reading, and in the next collection every instrument from the next one, those it did not report in the first
    /// included.
    /// </summary>
    [Fact]
    public void APublisherCreatedDuringACollectionReportsOneReadingInTheNext()
    {
        var a = Publisher(out var aRoutings, out var aTokens);
        Value(aRoutings);
        var late = Publisher(out var lateRoutings, out var lateTokens);
        Value(aTokens);
        var first = Value(lateTokens);

        Value(aRoutings);
        var routings = Value(lateRoutings);
        Assert.Equal(routings, Value(lateTokens));
        Assert.True(routings > first, $"the next collection reported reading {routings}, the first {first}");
        Value(aTokens);
        Assert.Equal(2, a.Taken);
    }

    /// <summary>
    /// A listener that pauses over a second between two instruments (as the documentation of the publishers says) has
    /// ended its collection: the next instrument reports a new reading, not the one taken before the pause.
    /// </summary>
    [Fact]
    public void APauseOfOverASecondBetweenTwoInstrumentsEndsTheCollection()
    {
        var a = Publisher(out var routings, out var tokens);
        var first = Value(routings);

        Thread.Sleep(TimeSpan.FromSeconds(1.25));

        Assert.True(Value(tokens) > first, "the instrument after the pause reported the reading from before it");
        Assert.Equal(2, a.Taken);
    }

    /// <summary>
    /// However long the refresh interval (here longer than the machine has run: a reading taken once and kept), the first
    /// collection takes a reading, and the next keeps it.
    /// </summary>
    [Fact]
    public void TheFirstCollectionTakesAReadingWhateverTheRefreshInterval()
    {
        var taken = 0;
        var reading = new CollectionReading<Reading>(() => new Reading(++taken), TimeSpan.MaxValue);
        var routings = reading.ObserveOne(r => new System.Diagnostics.Metrics.Measurement<int>(r.Value));

        Assert.Equal(1, Value(routings));
        Assert.Equal(1, Value(routings));
        Assert.Equal(1, reading.Taken);
    }

    private static int Value(Func<IEnumerable<System.Diagnostics.Metrics.Measurement<int>>> instrument) => instrument().Single().Value;

    /// <summary>A publisher of two instruments whose every reading is numbered, a new one at each collection.</summary>
    private static CollectionReading<Reading> Publisher(
        out Func<IEnumerable<System.Diagnostics.Metrics.Measurement<int>>> routings, out Func<IEnumerable<System.Diagnostics.Metrics.Measurement<int>>> tokens)
    {
        var taken = 0;
        var reading = new CollectionReading<Reading>(() => new Reading(++taken), TimeSpan.Zero);
        routings = reading.ObserveOne(r => new System.Diagnostics.Metrics.Measurement<int>(r.Value));
        tokens = reading.ObserveOne(r => new System.Diagnostics.Metrics.Measurement<int>(r.Value));
        return reading;
    }

    private sealed record Reading(int Value);
}
