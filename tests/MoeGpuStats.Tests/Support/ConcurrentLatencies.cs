namespace MoeGpuStats.Tests.Support;

/// <summary>
/// Latency recording is thread-safe on either engine: records from several threads at once keep
/// every measurement. Latencies are whole seconds, so every partial sum is an exact integer in
/// milliseconds and the total does not depend on the order the threads' records interleave in.
/// </summary>
internal static class ConcurrentLatencies
{
    private const int Threads = 4;
    private const int PerThread = 200_000;

    /// <summary>
    /// The latency of record <paramref name="i"/> of thread <paramref name="thread"/>: 1 to 7 s, except
    /// one 0 s (thread 0) and one 9 s (the last thread), the only extremes.
    /// </summary>
    internal static TimeSpan LatencyOf(int thread, int i) => (thread, i) switch
    {
        (0, 123) => TimeSpan.Zero,
        (Threads - 1, 4_567) => TimeSpan.FromSeconds(9),
        _ => TimeSpan.FromSeconds(1 + (thread * 31 + i) % 7),
    };

    /// <summary>
    /// Runs <see cref="Threads"/> recording threads of <see cref="PerThread"/> records each, plus one reader
    /// calling <paramref name="read"/> until they finish; returns every latency recorded, in milliseconds.
    /// </summary>
    internal static double[] RecordConcurrently(Action<TimeSpan> record, Action read)
    {
        var failures = new Exception?[Threads + 1];
        using var start = new Barrier(Threads + 1);
        var finished = 0;
        var recorders = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            try
            {
                for (var i = 0; i < PerThread; i++)
                {
                    record(LatencyOf(t, i));
                }
            }
            catch (Exception e)
            {
                failures[t] = e;
            }
            finally
            {
                Interlocked.Increment(ref finished);
            }
        })).ToList();
        var reader = new Thread(() =>
        {
            start.SignalAndWait();
            try
            {
                while (Volatile.Read(ref finished) < Threads)
                {
                    read();
                }
            }
            catch (Exception e)
            {
                failures[Threads] = e;
            }
        });
        recorders.Add(reader);
        recorders.ForEach(thread => thread.Start());
        recorders.ForEach(thread => thread.Join());
        Assert.All(failures, Assert.Null);
        return [.. Enumerable.Range(0, Threads).SelectMany(t => Enumerable.Range(0, PerThread).Select(i => LatencyOf(t, i).TotalMilliseconds))];
    }

    internal static void AssertExact(double[] expected, LatencyStats latency)
    {
        Assert.Equal((ulong)expected.Length, latency.TotalMeasurements);
        Assert.Equal(expected.Sum(), latency.TotalLatencyMs);
        Assert.Equal(0.0, latency.MinLatencyMs);
        Assert.Equal(9_000.0, latency.MaxLatencyMs);
        var window = latency.RecentLatencies;
        Assert.Equal(LatencyStats.WindowSize, window.Count);
        Assert.All(window, value => Assert.Contains(value, (double[])[0, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 7_000, 9_000]));
        // The sorted copy the percentiles read must hold the same values as the window.
        Assert.Equal(window.Max(), latency.Percentile(100));
        Assert.Equal(window.Min(), latency.Percentile(0));
        Assert.Equal(window.Order().ElementAt(499), latency.Percentile(50));
    }
}
