using System.Runtime.InteropServices;

namespace MoeGpuStats.Native;

/// <summary>A model's pending reads (<c>moegs_model_read_*</c>): begun without a wait, polled, finished into the caller's structs.</summary>
public static unsafe partial class NativeApi
{
    /// <summary>Backs <c>moegs_model_read_begin</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelReadBegin(long handle, int recentSteps, int* expertRanks, IntPtr stream, long* read)
    {
        if (read is null)
        {
            return Fail(NativeStatus.InvalidArgument, "read is NULL: moegs_model_read_begin writes the pending read's handle there.");
        }

        *read = 0;

        // In the caller's CUDA context, as a record: a stream handle that names the current context's default stream
        // (CU_STREAM_LEGACY, CU_STREAM_PER_THREAD) is the caller's, not ILGPU's; the model enters its own for the read.
        return With(
            Models,
            "model",
            handle,
            (Recent: recentSteps, Ranks: (IntPtr)expertRanks, Stream: stream, Out: (IntPtr)read),
            static (model, a) =>
            {
                if (a.Recent != 0)
                {
                    NativeChecks.RecentSteps(a.Recent, model.Stats.Options.Window, none: "0 for the whole window");
                    model.CheckRecentSteps(a.Recent);
                }

                if (a.Stream != IntPtr.Zero && model.Kind != "cuda")
                {
                    throw new NativeArgumentException($"stream = 0x{a.Stream:x}: a stream orders the read only on cuda; on {model.Kind} the read has arrived when the call returns: pass NULL.");
                }

                var pending = model.BeginRead(a.Recent, (int*)a.Ranks, a.Stream);
                var id = Interlocked.Increment(ref _nextHandle);
                ModelReads[id] = pending;
                *(long*)a.Out = id;
            },
            onDevice: false,
            readOnly: true);
    }

    /// <summary>Backs <c>moegs_model_read_ready</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelReadReady(long read, int* arrived)
    {
        if (arrived is null)
        {
            return Fail(NativeStatus.InvalidArgument, "arrived is NULL: moegs_model_read_ready writes 1 (arrived) or 0 there.");
        }

        *arrived = 0;
        return With(ModelReads, "pending model read", read, (IntPtr)arrived, static (pending, r) => *(int*)r = pending.Read.IsCompleted ? 1 : 0, onDevice: false, readOnly: true);
    }

    /// <remarks>
    /// The results are written, then the handle freed; a call refused for its arguments keeps it. The read's removal from
    /// the registry decides which of several finishes (or a destroy) racing on one read has it: the others find no live
    /// read and say so, as after it.
    /// </remarks>
    [UnmanagedCallersOnly]
    public static int ModelReadFinish(long read, NativeModelBalance* destination, NativeLayerBalance* window, NativeLayerBalance* sinceStart, ulong* windowLoad, int capacity)
    {
        const string Kind = "pending model read";
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_model_read_finish writes the model's figures there (moegs_model_read_destroy drops a read unread).");
        }

        if (!ModelReads.TryGetValue(read, out var pending))
        {
            return NotLive(read, Kind);
        }

        var claimed = false;
        int status;
        try
        {
            lock (pending.Gate)
            {
                if (pending.Disposed)
                {
                    return NotLive(read, Kind);
                }

                var (layers, experts) = pending.Shape;
                if (windowLoad is not null)
                {
                    NativeChecks.WindowCapacity(capacity, layers, experts, "window_load");
                }

                if (!ModelReads.TryRemove(read, out _))
                {
                    return NotLive(read, Kind);
                }

                claimed = true;
                NativeModel.WriteBalance(pending.Read.Summary, pending.Entries, destination, window, sinceStart);
                if (windowLoad is not null)
                {
                    pending.Read.WindowLoad.CopyTo(new Span<ulong>(windowLoad, capacity));
                }
            }

            status = NativeStatus.Ok;
        }
        catch (Exception exception)
        {
            status = Fail(exception);
        }

        if (claimed)
        {
            try
            {
                Free(pending);
            }
            catch (Exception exception)
            {
                // No exception may leave a C call (the runtime would end the process). A free that fails (a device
                // fault) is the call's error only where the results were written: where they failed, it is the same fault.
                if (status == NativeStatus.Ok)
                {
                    status = Fail(exception);
                }
            }
        }

        return status;
    }

    /// <summary>Backs <c>moegs_model_read_destroy</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelReadDestroy(long read) => Remove(ModelReads, "pending model read", read);
}
