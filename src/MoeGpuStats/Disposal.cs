using System.Runtime.ExceptionServices;

namespace MoeGpuStats;

/// <summary>Disposes the parts of an owner, every one of them even where one throws.</summary>
internal static class Disposal
{
    /// <summary>
    /// Disposes each of <paramref name="parts"/> in order (nulls skipped), all of them even where one throws: after a
    /// sticky CUDA error every wait and free fails, and the buffers, streams and contexts after the failing part must
    /// not be kept for it. The first exception is rethrown, with its stack, after the last part.
    /// </summary>
    public static void All(params ReadOnlySpan<IDisposable?> parts)
    {
        ExceptionDispatchInfo? first = null;
        foreach (var part in parts)
        {
            try
            {
                part?.Dispose();
            }
            catch (Exception exception)
            {
                first ??= ExceptionDispatchInfo.Capture(exception);
            }
        }

        first?.Throw();
    }
}
