namespace MoeGpuStats.Tests.Support;

/// <summary>Reads on the test's thread while another thread writes: what a torn read would show, the reads' assertions catch.</summary>
internal static class ReadsDuringWrites
{
    /// <summary>
    /// Runs <paramref name="write"/> <paramref name="writes"/> times on another thread and <paramref name="read"/>
    /// (given its number) on this one until the writes end; fails on the writer's exception, or when no read overlapped the writes.
    /// </summary>
    internal static void Run(int writes, Action write, Action<int> read)
    {
        Exception? failure = null;
        var finished = false;
        var writer = new Thread(() =>
        {
            try
            {
                for (var w = 0; w < writes; w++)
                {
                    write();
                }
            }
            catch (Exception e)
            {
                failure = e;
            }
            finally
            {
                Volatile.Write(ref finished, true);
            }
        });
        writer.Start();
        var reads = 0;
        while (!Volatile.Read(ref finished))
        {
            read(reads++);
        }

        writer.Join();
        Assert.Null(failure);
        Assert.True(reads > 0, "the reads never overlapped the writes");
    }
}
