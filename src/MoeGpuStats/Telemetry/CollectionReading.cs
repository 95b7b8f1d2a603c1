using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace MoeGpuStats.Telemetry;

/// <summary>
/// The reading that a meter's observable instruments report, so that every instrument of one
/// collection reports the same state. A collection runs the callbacks of every publisher's instruments
/// on one thread, back to back, so a thread's collection is one for all publishers (<see cref="CollectionThread"/>):
/// it ends when any publisher's instrument it has already reported is observed again, or when the listener
/// was last busy with any of them more than <see cref="CollectionGap"/> ago (another listener's collection, of
/// other instruments): at the end of a callback, a publisher's reading taken in it included, or when it took the
/// last of an instrument's many measurements, however long it spent on them. Each publisher reports one reading
/// per collection: the latest, or a new one when the latest is older than the refresh interval. A collection that
/// outlasts the interval, waits on another publisher's slow reading, or runs beside collections on other threads,
/// does not switch readings halfway; nor does a publisher created during a collection carry that collection's
/// reading into the next.
/// </summary>
/// <remarks>
/// The thread-local state is left to its finalizer, not disposed with the meter: a listener may
/// still be observing an instrument on another thread while the meter is disposed.
/// </remarks>
/// <typeparam name="T">The reading: values copied out of the statistics, never changed.</typeparam>
internal sealed class CollectionReading<T>(Func<T> take, TimeSpan refreshInterval)
    where T : class
{
    /// <summary>
    /// The longest pause between two callbacks of one collection: they run back to back, apart by the
    /// time a listener takes over one instrument's measurements.
    /// </summary>
    public static readonly TimeSpan CollectionGap = TimeSpan.FromSeconds(1);

    private readonly Lock _lock = new();
    private readonly ThreadLocal<Collection?> _collection = new();
    private int _instruments;
    private T? _latest;
    private long _timestamp;
    private int _taken;

    /// <summary>Readings taken so far.</summary>
    public int Taken => Volatile.Read(ref _taken);

    /// <summary>The callback of one more instrument of one measurement: <paramref name="value"/> of the reading its collection reports.</summary>
    public Func<IEnumerable<Measurement<TValue>>> ObserveOne<TValue>(Func<T, Measurement<TValue>> value)
        where TValue : struct
    {
        var instrument = Interlocked.Increment(ref _instruments) - 1;
        return () => [value(Read(instrument).Reading)];
    }

    /// <summary>
    /// The callback of one more instrument of many measurements. The time the listener spends on them
    /// (a large model's 65,536 per-expert series take a second on a busy host) is work, not a pause
    /// between collections: the gap to the next instrument counts from the last of them.
    /// </summary>
    public Func<IEnumerable<Measurement<TValue>>> Observe<TValue>(Func<T, IEnumerable<Measurement<TValue>>> values)
        where TValue : struct
    {
        var instrument = Interlocked.Increment(ref _instruments) - 1;
        return () => Listed(values(Read(instrument).Reading));
    }

    /// <summary><paramref name="measurements"/> as the listener takes them, one at a time, marking the collection busy after the last.</summary>
    private static IEnumerable<Measurement<TValue>> Listed<TValue>(IEnumerable<Measurement<TValue>> measurements)
        where TValue : struct
    {
        foreach (var measurement in measurements)
        {
            yield return measurement;
        }

        CollectionThread.LastCallback = Stopwatch.GetTimestamp();
    }

    private Collection Read(int instrument)
    {
        var collection = _collection.Value;
        var repeated = collection is not null && collection.Epoch == CollectionThread.Epoch
            && instrument < collection.Reported.Length && collection.Reported[instrument];
        if (repeated || Stopwatch.GetElapsedTime(CollectionThread.LastCallback) > CollectionGap)
        {
            CollectionThread.Epoch++;
        }

        try
        {
            if (collection is null || collection.Epoch != CollectionThread.Epoch)
            {
                collection = new Collection(Latest(), CollectionThread.Epoch);
                _collection.Value = collection;
            }

            collection.Report(instrument, Volatile.Read(ref _instruments));
            return collection;
        }
        finally
        {
            // The reading's time is work of the collection, also when it fails: the listener goes on to the other publishers.
            CollectionThread.LastCallback = Stopwatch.GetTimestamp();
        }
    }

    private T Latest()
    {
        lock (_lock)
        {
            if (_latest is null || Stopwatch.GetElapsedTime(_timestamp) >= refreshInterval)
            {
                _latest = take();
                _timestamp = Stopwatch.GetTimestamp();
                _taken++;
            }

            return _latest;
        }
    }

    /// <summary>A publisher's part of one thread's collection: the reading it reports, the instruments it has reported, and the collection's epoch.</summary>
    private sealed class Collection(T reading, long epoch)
    {
        public T Reading { get; } = reading;

        public bool[] Reported { get; private set; } = [];

        public long Epoch { get; } = epoch;

        /// <summary>Marks <paramref name="instrument"/> reported, of <paramref name="instruments"/> (more where the publisher registered one since).</summary>
        public void Report(int instrument, int instruments)
        {
            if (Reported.Length <= instrument)
            {
                var reported = Reported;
                Array.Resize(ref reported, Math.Max(instruments, instrument + 1));
                Reported = reported;
            }

            Reported[instrument] = true;
        }
    }
}

/// <summary>
/// The collection a thread is running, shared by every publisher's <see cref="CollectionReading{T}"/>: a listener
/// runs all their callbacks of one collection back to back on one thread, so one publisher's repeated instrument, or
/// a pause since any publisher's callback, ends it for all of them.
/// </summary>
internal static class CollectionThread
{
    /// <summary>The thread's collection: a new number at each collection's start.</summary>
    [ThreadStatic]
    public static long Epoch;

    /// <summary>When the thread's last callback of any publisher ended (<see cref="Stopwatch.GetTimestamp"/>).</summary>
    [ThreadStatic]
    public static long LastCallback;
}
