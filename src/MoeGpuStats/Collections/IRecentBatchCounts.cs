namespace MoeGpuStats.Collections;

/// <summary>
/// A layer's histograms of its newest batches, kept by another structure (a model's window of expert load), so
/// that a <see cref="LoadVarianceWindow"/> can compute a deferred variance from them instead of keeping a copy of
/// each batch's histogram.
/// </summary>
internal interface IRecentBatchCounts
{
    /// <summary>How many of the newest batches it keeps: a variance window of at most as many batches can defer to it.</summary>
    int Batches { get; }

    /// <summary>The key of the batch being recorded, read before that batch is kept, under the owner's lock.</summary>
    int NextKey { get; }

    /// <summary>Writes the counts of the batch <paramref name="key"/> names into <paramref name="counts"/>, one per expert.</summary>
    void CopyCounts(int key, Span<int> counts);
}
