using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Algorithms.HistogramOperations;
using ILGPU.Runtime;

namespace MoeGpuStats.Lab;

/// <summary>
/// A batch's expert histogram counted with ILGPU.Algorithms' <c>Histogram</c>: what a C# user of ILGPU
/// writes without this library. One global atomic add per id (ILGPU.Algorithms privatizes nothing)
/// and nothing else: no fold into running statistics, no invalid-id count, no padding rule, so it is
/// a lower bound on the work a record does, timed beside the record by the benchmarks.
/// </summary>
internal sealed class AlgorithmsHistogram
{
    private readonly HistogramUnchecked<int, Stride1D.Dense, int> _histogram;

    /// <summary>Loads the histogram kernel on <paramref name="accelerator"/>.</summary>
    public AlgorithmsHistogram(Accelerator accelerator) =>
        _histogram = accelerator.CreateHistogramUnchecked<int, Stride1D.Dense, int, HistogramIncrementInt32, ExpertBin>();

    /// <summary>Adds each id in <c>[0, bins.Length)</c> to its bin (others, padding included, count nowhere); enqueued on <paramref name="stream"/>.</summary>
    public void Count(AcceleratorStream stream, ArrayView1D<int, Stride1D.Dense> ids, ArrayView<int> bins) => _histogram(stream, ids, bins);

    /// <summary>An id's bin: the expert it names, when there is one.</summary>
    internal readonly struct ExpertBin : IComputeMultiBinOperation<int, int, HistogramIncrementInt32>
    {
        public void ComputeHistogramBins(int value, ArrayView<int> histogram, in HistogramIncrementInt32 incrementOperation, out bool incrementOverflow)
        {
            incrementOverflow = false;
            if ((uint)value < (uint)histogram.Length)
            {
                incrementOperation.Increment(ref histogram[value], out incrementOverflow);
            }
        }
    }
}
