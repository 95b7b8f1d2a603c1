using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using static System.FormattableString;

namespace MoeGpuStats.Telemetry;

/// <summary>
/// The instruments of the <see cref="RoutingStatsMetrics.MeterName"/> meter, created once per meter
/// factory (once per process without one) and shared by every publisher
/// (<see cref="RoutingStatsMetrics"/>, <see cref="ModelRoutingStatsMetrics"/>) created with it: an
/// observable instrument reports the measurements of each live publisher, and a publisher's
/// <see cref="Release"/> takes its own away without touching the instruments.
/// </summary>
/// <remarks>
/// One meter per publisher, all of one name, is what a listener cannot tell apart: the OpenTelemetry
/// SDK merges identical instruments of same-named meters into one metric stream and stops the stream
/// when any one of them is disposed (open-telemetry/opentelemetry-dotnet#6412), so disposing one
/// layer's publisher would end every other layer's series; and an <see cref="IMeterFactory"/> (the host's,
/// from <c>AddMetrics</c>) hands every publisher the same meter, whose <c>Dispose</c> it ignores, so a
/// disposed publisher would keep publishing. The meter created here without a factory is disposed when its
/// last publisher is; a factory's meter is the factory's to dispose.
/// </remarks>
internal sealed class SharedInstruments
{
    private static readonly Lock SharedLock = new();
    private static readonly ConditionalWeakTable<IMeterFactory, SharedInstruments> ByFactory = [];
    private static SharedInstruments? _withoutFactory;

    private readonly bool _ownsMeter;
    private readonly Dictionary<string, object> _instruments = [];
    private readonly List<IObserved> _observed = [];
    private int _publishers;

    private SharedInstruments(IMeterFactory? factory)
    {
        _ownsMeter = factory is null;
        Meter = factory?.Create(new MeterOptions(RoutingStatsMetrics.MeterName)) ?? new Meter(RoutingStatsMetrics.MeterName);
    }

    private interface IObserved
    {
        void Remove(object publisher);
    }

    /// <summary>The meter that holds the instruments.</summary>
    public Meter Meter { get; }

    /// <summary>The instruments of <paramref name="factory"/>'s meter (of the process's own meter when null), held by one more publisher until its <see cref="Release"/>.</summary>
    public static SharedInstruments Acquire(IMeterFactory? factory)
    {
        lock (SharedLock)
        {
            var shared = factory is null
                ? _withoutFactory ??= new SharedInstruments(null)
                : ByFactory.GetValue(factory, f => new SharedInstruments(f));
            shared._publishers++;
            return shared;
        }
    }

    /// <summary>Adds <paramref name="publisher"/>'s measurements to the observable counter <paramref name="name"/>, creating it on first use.</summary>
    public void ObservableCounter<T>(object publisher, string name, Func<IEnumerable<Measurement<T>>> observe, string? unit, string description)
        where T : struct =>
        Observe<T>(name, o => Meter.CreateObservableCounter(name, o.Observe, unit, description)).Add(publisher, observe);

    /// <summary>Adds <paramref name="publisher"/>'s measurements to the observable gauge <paramref name="name"/>, creating it on first use.</summary>
    public void ObservableGauge<T>(object publisher, string name, Func<IEnumerable<Measurement<T>>> observe, string? unit, string description)
        where T : struct =>
        Observe<T>(name, o => Meter.CreateObservableGauge(name, o.Observe, unit, description)).Add(publisher, observe);

    /// <summary>The histogram <paramref name="name"/>, created on first use with <paramref name="buckets"/> as its advised bucket boundaries.</summary>
    public Histogram<double> Histogram(string name, string unit, string description, IReadOnlyList<double> buckets)
    {
        lock (SharedLock)
        {
            if (!_instruments.TryGetValue(name, out var instrument))
            {
                instrument = Meter.CreateHistogram(name, unit, description, tags: null, new InstrumentAdvice<double> { HistogramBucketBoundaries = buckets });
                _instruments.Add(name, instrument);
            }

            return (Histogram<double>)instrument;
        }
    }

    /// <summary>Takes <paramref name="publisher"/>'s measurements away; the last publisher disposes the meter this class created.</summary>
    public void Release(object publisher)
    {
        lock (SharedLock)
        {
            foreach (var observed in _observed)
            {
                observed.Remove(publisher);
            }

            if (--_publishers == 0 && _ownsMeter)
            {
                // Forgotten first: disposing the meter calls listeners back, and a publisher one of them
                // creates then gets a new meter, not this one.
                _withoutFactory = null;
                Meter.Dispose();
            }
        }
    }

    private Observed<T> Observe<T>(string name, Action<Observed<T>> create)
        where T : struct
    {
        lock (SharedLock)
        {
            if (!_instruments.TryGetValue(name, out var instrument))
            {
                var observed = new Observed<T>();
                create(observed);
                _observed.Add(observed);
                _instruments.Add(name, observed);
                return observed;
            }

            return instrument as Observed<T> ?? throw new InvalidOperationException(Invariant($"The instrument {name} exists with another kind or type."));
        }
    }

    /// <summary>One observable instrument's sources: each live publisher's callback, replaced whole on change so that a collection reads them without a lock.</summary>
    private sealed class Observed<T> : IObserved
        where T : struct
    {
        private volatile (object Publisher, Func<IEnumerable<Measurement<T>>> Observe)[] _sources = [];

        public void Add(object publisher, Func<IEnumerable<Measurement<T>>> observe)
        {
            lock (SharedLock)
            {
                _sources = [.. _sources, (publisher, observe)];
            }
        }

        public void Remove(object publisher)
        {
            lock (SharedLock)
            {
                _sources = [.. _sources.Where(s => !ReferenceEquals(s.Publisher, publisher))];
            }
        }

        public IEnumerable<Measurement<T>> Observe()
        {
            List<Exception>? failures = null;
            foreach (var (_, observe) in _sources)
            {
                IEnumerable<Measurement<T>> measurements;
                try
                {
                    measurements = observe();
                }
                catch (ObjectDisposedException)
                {
                    // A publisher outlived by its statistics has nothing to report; the instrument is
                    // every publisher's, and a throw would lose the others' measurements with it.
                    continue;
                }
                catch (Exception exception)
                {
                    // Any other failure (a device error) is this publisher's alone: thrown to the listener,
                    // which logs it, once the others' measurements are taken.
                    (failures ??= []).Add(exception);
                    continue;
                }

                // Lazily, as the listener takes them: its time over many measurements is work, not a
                // pause between collections (CollectionReading).
                foreach (var measurement in measurements)
                {
                    yield return measurement;
                }
            }

            if (failures is [var failure])
            {
                ExceptionDispatchInfo.Throw(failure);
            }

            if (failures is not null)
            {
                throw new AggregateException(failures);
            }
        }
    }
}
