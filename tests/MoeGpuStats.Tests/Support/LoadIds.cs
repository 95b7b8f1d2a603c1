namespace MoeGpuStats.Tests.Support;

/// <summary>
/// Random top-k ids of a named load (uniform, skewed, hot, collapsed, runs, invalid, minus one), for the
/// tests that count them on a device and on the managed engine.
/// </summary>
internal static class LoadIds
{
    internal static int[] Ids(Random random, int length, int experts, string load)
    {
        if (load == "collapsed")
        {
            // A top-8 router that sends every token to the same experts, in an order that varies.
            return [.. Enumerable.Range(0, length).Select(i => (i % 8 + (i / 8 * 5 + random.Next(2)) % 8) % 8)];
        }

        if (load == "runs")
        {
            return Runs(random, length, experts);
        }

        var ids = new int[length];
        for (var i = 0; i < length; i++)
        {
            var u = random.NextDouble();
            ids[i] = load switch
            {
                "uniform" => (int)(u * experts),
                "skewed" => (int)(u * u * u * experts),
                "hot" => u < 0.9 ? 0 : (int)(u * experts),
                "invalid" => u < 0.05 ? (u < 0.025 ? -1 - (int)(u * 1e6) : experts + (int)(u * 1e6)) : (int)(u * experts),

                // −1 is also what a thread's run starts from before its first id.
                "minus one" => u < 0.5 ? -1 : (int)(u * experts),
                _ => throw new ArgumentOutOfRangeException(nameof(load)),
            };
        }

        return ids;
    }

    /// <summary>
    /// Stretches of one id (valid, negative or too large) of random length, up to the whole batch:
    /// the kernel counts a thread's equal consecutive ids in a register, and these end its runs at
    /// every place a run can end (inside the unrolled loop, in its tail, at the thread's last id).
    /// </summary>
    private static int[] Runs(Random random, int length, int experts)
    {
        var ids = new int[length];
        for (var start = 0; start < length;)
        {
            var id = random.Next(5) switch
            {
                0 => -1,
                1 => experts,
                2 => 0,
                3 => experts - 1,
                _ => random.Next(experts),
            };
            var end = Math.Min(length, start + 1 + random.Next(random.Next(2) == 0 ? 64 : length));
            ids.AsSpan(start, end - start).Fill(id);
            start = end;
        }

        return ids;
    }
}
