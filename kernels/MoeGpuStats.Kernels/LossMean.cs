namespace MoeGpuStats.Kernels;

/// <summary>
/// A loss average: its f64 sum over the batches divided by them, rounded to float, with −0 as 0. A negative sum whose
/// mean lies within half the smallest float of 0 rounds to −0, which JSON writes as <c>-0</c>, a reader takes as 0 and a
/// report would print as <c>-0.00</c>. The device fold, the managed engine and a merge all take it from here, so that
/// they agree to the bit.
/// </summary>
internal static class LossMean
{
    public static float Of(double sum, double batches)
    {
        var mean = (float)(sum / batches);
        return mean == 0f ? 0f : mean;
    }
}
