using ILGPU;
using ILGPU.Runtime;

namespace MoeGpuStats.Tests.Device;

/// <summary>
/// The device facade is thread-safe: records, latency records, reads and snapshots from several
/// threads at once keep every record, on ILGPU's CPU accelerator.
/// </summary>
public sealed partial class DeviceRoutingStatsTests
{
    private const int Experts = 8;
    private const int TopK = 2;
    private const int Threads = 4;
    private const int RecordsPerThread = 42;

    [Fact]
    public void ConcurrentLatencyRecordsOnTheDeviceFacadeKeepEveryLatency()
    {
        using var stats = RoutingStats.OnDevice(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = Experts });
        var expected = ConcurrentLatencies.RecordConcurrently(stats.RecordRoutingLatency, () => _ = stats.RoutingLatencyStats.P95Latency());
        ConcurrentLatencies.AssertExact(expected, stats.RoutingLatencyStats);
    }

    [Fact]
    public void ConcurrentRecordsReadsAndSnapshotsOnTheDeviceFacadeKeepEveryRecord()
    {
        var accelerator = TestAccelerators.Require("cpu");
        using var stats = RoutingStats.OnDevice(accelerator, new RoutingStatsOptions { Experts = Experts });
        // Ids recorded from device memory must stay there until the stream has read them: to the end.
        var buffers = new System.Collections.Concurrent.ConcurrentBag<MemoryBuffer1D<int, Stride1D.Dense>>();
        var failures = new Exception?[Threads + 1];
        using var start = new Barrier(Threads + 1);
        var finished = 0;
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            try
            {
                for (var r = 0; r < RecordsPerThread; r++)
                {
                    var (ids, tokens) = Batch(t, r);
                    switch (r % 3)
                    {
                        case 0:
                            stats.RecordRouting(ids, tokens, TopK);
                            break;
                        case 1:
                            stats.RecordRouting(new RoutingDecision { ExpertCapacities = Counts(ids), TotalTokens = tokens });
                            break;
                        default:
                            var buffer = accelerator.Allocate1D(ids);
                            buffers.Add(buffer);
                            stats.RecordRouting(buffer.View, tokens, TopK);
                            break;
                    }

                    stats.RecordRoutingLatency(TimeSpan.FromSeconds(1 + t));
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
        var reads = 0;
        threads.Add(new Thread(() =>
        {
            start.SignalAndWait();
            try
            {
                ulong seen = 0;
                while (Volatile.Read(ref finished) < Threads)
                {
                    using var snapshot = stats.Snapshot();
                    Assert.True(snapshot.TotalRoutings >= seen, "a later snapshot saw fewer routings");
                    seen = snapshot.TotalRoutings;
                    Assert.Equal(snapshot.TotalTokens * TopK, snapshot.ExpertTokenCounts.Aggregate(0UL, (sum, count) => sum + count));
                    Assert.True(stats.TotalRoutings >= seen);
                    _ = stats.UtilizationCv();
                    _ = stats.RoutingLatencyStats.P99Latency();
                    reads++;
                }
            }
            catch (Exception e)
            {
                failures[Threads] = e;
            }
        }));
        threads.ForEach(thread => thread.Start());
        threads.ForEach(thread => thread.Join());
        using var final = stats.Snapshot();
        foreach (var buffer in buffers)
        {
            buffer.Dispose();
        }

        Assert.All(failures, Assert.Null);
        Assert.True(reads > 0, "the reader never overlapped the records");
        var batches = Enumerable.Range(0, Threads).SelectMany(t => Enumerable.Range(0, RecordsPerThread).Select(r => Batch(t, r))).ToList();
        var expectedCounts = new ulong[Experts];
        foreach (var (ids, _) in batches)
        {
            foreach (var id in ids)
            {
                expectedCounts[id]++;
            }
        }

        Assert.Equal((ulong)batches.Count, final.TotalRoutings);
        Assert.Equal((ulong)batches.Sum(b => b.Tokens), final.TotalTokens);
        Assert.Equal(expectedCounts, final.ExpertTokenCounts);
        Assert.Equal((ulong)batches.Count, final.RoutingLatencyStats.TotalMeasurements);
        Assert.Equal(1_000.0 * RecordsPerThread * Enumerable.Range(1, Threads).Sum(), final.RoutingLatencyStats.TotalLatencyMs);
    }

    /// <summary>
    /// A query read while another thread resets and records sees one state: an expert count and
    /// values read apart would let a reset between them give a most utilized expert of a state
    /// without records, at utilization 0.
    /// </summary>
    [Fact]
    public void AQueryOnAnotherThreadThanResetsSeesOneState()
    {
        using var stats = RoutingStats.OnDevice(TestAccelerators.Require("cpu"), new RoutingStatsOptions { Experts = Experts });
        // Every record routes a token to each expert with a loss of 1: utilization is positive exactly when there is a loss.
        var ids = Enumerable.Range(0, Experts).ToArray();
        ReadsDuringWrites.Run(
            writes: 400,
            write: () =>
            {
                stats.Reset();
                stats.RecordRouting(ids, Experts, 1, loadBalanceLoss: 1f);
            },
            read: reads =>
            {
                var most = stats.MostUtilizedExpert();
                Assert.True(most is null || most.Value.Utilization > 0, $"read {reads}: the expert count of one state with the query of another");
                var least = stats.LeastUtilizedExpert();
                Assert.True(least is null || least.Value.Utilization > 0, $"read {reads}: the expert count of one state with the query of another");
                var summary = stats.UtilizationSummary();
                Assert.True(summary.ContainsKey("mean_utilization") == (summary["average_load_balance_loss"] == 1f), $"read {reads}: a summary from two states");
            });
    }

    /// <summary>Batch <paramref name="r"/> of thread <paramref name="t"/>: 3 to 17 tokens, ids skewed per thread.</summary>
    private static (int[] Ids, int Tokens) Batch(int t, int r)
    {
        var tokens = 3 + (t * 7 + r) % 15;
        var ids = new int[tokens * TopK];
        for (var i = 0; i < ids.Length; i++)
        {
            ids[i] = (t + i * (r + 1) + i / 3) % Experts;
        }

        return (ids, tokens);
    }

    private static int[] Counts(int[] ids)
    {
        var counts = new int[Experts];
        foreach (var id in ids)
        {
            counts[id]++;
        }

        return counts;
    }
}
