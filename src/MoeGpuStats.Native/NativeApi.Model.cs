using System.Runtime.InteropServices;

namespace MoeGpuStats.Native;

/// <summary>The model's entry points (<c>moegs_model_*</c>): a whole model's records, summaries, window loads, device arrays and layers.</summary>
public static unsafe partial class NativeApi
{
    /// <summary>Backs <c>moegs_model_save</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelSave(long handle, byte* path)
    {
        var file = FilePath(path, "moegs_model_save", out var refusal);
        return file is null ? Fail(NativeStatus.InvalidArgument, refusal) : ReadModel(handle, model => SaveTo(file, full => Serialization.RoutingStatsFile.Save(model.Stats, full)));
    }

    /// <summary>Backs <c>moegs_model_save_checkpoint</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelSaveCheckpoint(long handle, byte* path)
    {
        var file = FilePath(path, "moegs_model_save_checkpoint", out var refusal);
        return file is null ? Fail(NativeStatus.InvalidArgument, refusal) : ReadModel(handle, model =>
        {
            model.RequireWindowRing(handle, "there are no steps to checkpoint; save it without the ring");
            try
            {
                SaveTo(file, full => Serialization.RoutingStatsFile.Save(model.Stats, full, withWindowRing: true));
            }
            catch (ArgumentException exception) when (exception.ParamName == "withWindowRing")
            {
                // The library's words begin with its parameter, which the C call does not have: the rest is the C caller's too.
                const string Lead = "withWindowRing is true but ";
                var reason = ErrorText.Of(exception);
                throw new NativeArgumentException($"handle {handle}: {(reason.StartsWith(Lead, StringComparison.Ordinal) ? reason[Lead.Length..] : reason)}");
            }
        });
    }

    /// <summary>Backs <c>moegs_model_load</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelLoad(byte* accelerator, byte* path, long* handle)
    {
        if (handle is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_model_load writes the new handle there.");
        }

        *handle = 0;
        var file = FilePath(path, "moegs_model_load", out var refusal, reads: true);
        return file is null ? Fail(NativeStatus.InvalidArgument, refusal) : Guard(() =>
        {
            var kind = AcceleratorName(accelerator);
            NativeDevice.CheckAutoChoice(kind);
            var id = Interlocked.Increment(ref _nextHandle);
            Models[id] = NativeModel.Load(kind, file, LoadFrom(file));
            *handle = id;
        });
    }

    /// <summary>Backs <c>moegs_model_options</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelOptions(long handle, int* layers, int* experts, int* expertCapacity, int* window, float* utilizationDecay, uint* flags) =>
        With(
            Models,
            "model",
            handle,
            (Layers: (IntPtr)layers, Experts: (IntPtr)experts, Capacity: (IntPtr)expertCapacity, Window: (IntPtr)window, Decay: (IntPtr)utilizationDecay, Flags: (IntPtr)flags),
            static (model, a) =>
            {
                var options = model.Stats.Options;
                Write(a.Layers, options.Layers);
                Write(a.Experts, options.Experts);
                Write(a.Capacity, options.ExpertCapacity ?? 0);
                Write(a.Window, options.Window);
                Write(a.Decay, options.UtilizationDecay ?? -1f);
                Write(a.Flags, options.SkipEmptySteps ? NativeChecks.SkipEmptySteps : 0u);
            },
            onDevice: false);

    /// <summary>Writes <paramref name="value"/> where <paramref name="target"/> points; nothing for NULL.</summary>
    private static void Write<T>(IntPtr target, T value)
        where T : unmanaged
    {
        if (target != IntPtr.Zero)
        {
            *(T*)target = value;
        }
    }

    /// <summary>The model saved at <paramref name="path"/>, on the managed engine; a file that cannot be read as one is a <see cref="NativeIoException"/> naming it.</summary>
    private static ModelRoutingStats LoadFrom(string path)
    {
        try
        {
            return Serialization.RoutingStatsFile.LoadModel(path);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            // The library's reason names the path first, which this message does already, and for a layer's file a .NET call C has no match for.
            var reason = ErrorText.Clause(exception);
            reason = reason.StartsWith(path + ": ", StringComparison.Ordinal) ? reason[(path.Length + 2)..] : reason;
            reason = reason.Replace("; read it with RoutingStatsFile.Load", "", StringComparison.Ordinal);
            throw new NativeIoException($"{NativeChecks.Escaped(path, MostPathShown)}: cannot be read as a model ({NativeChecks.Escaped(reason, 2 * MostPathShown)}).", exception);
        }
    }

    /// <summary>Backs <c>moegs_model_create</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelCreate(byte* accelerator, int layers, int experts, int expertCapacity, int window, float utilizationDecay, long* handle) =>
        CreateModel("moegs_model_create", accelerator, layers, experts, expertCapacity, window, utilizationDecay, 0, handle);

    /// <remarks>moegs_model_create_with_flags: an entry of its own, so that a shim built against a managed half without it fails at its start, naming it.</remarks>
    [UnmanagedCallersOnly]
    public static int ModelCreateWithFlags(byte* accelerator, int layers, int experts, int expertCapacity, int window, float utilizationDecay, uint flags, long* handle) =>
        CreateModel("moegs_model_create_with_flags", accelerator, layers, experts, expertCapacity, window, utilizationDecay, flags, handle);

    private static int CreateModel(string function, byte* accelerator, int layers, int experts, int expertCapacity, int window, float utilizationDecay, uint flags, long* handle)
    {
        if (handle is null)
        {
            return Fail(NativeStatus.InvalidArgument, $"out is NULL: {function} writes the new handle there.");
        }

        *handle = 0;
        return Guard(() =>
        {
            var kind = AcceleratorName(accelerator);
            NativeChecks.ModelCreate(kind, layers, experts, expertCapacity, window, utilizationDecay, flags);
            var options = new ModelRoutingStatsOptions
            {
                Layers = layers,
                Experts = experts,
                ExpertCapacity = expertCapacity == 0 ? null : expertCapacity,
                Window = window == 0 ? NativeChecks.DefaultWindow : window,
                // -0.0 is not below 0: decay 0, as the library's [0, 1) holds it, kept (and saved) as 0.
                UtilizationDecay = utilizationDecay < 0 ? null : Math.Abs(utilizationDecay),
                SkipEmptySteps = (flags & NativeChecks.SkipEmptySteps) != 0,
            };
            var id = Interlocked.Increment(ref _nextHandle);
            Models[id] = new NativeModel(kind, options);
            *handle = id;
        });
    }

    /// <remarks>
    /// moegs_model_record (int32 ids, token_stride 0) and moegs_model_record_strided. As <see cref="Record"/>: the
    /// CUDA context is switched by the model for the record itself.
    /// </remarks>
    [UnmanagedCallersOnly]
    public static int ModelRecord(
        long handle, IntPtr ids, int idType, int layers, int tokens, int topK, long layerStride, long tokenStride, IntPtr validTokens, IntPtr loadBalanceLosses, IntPtr routerZLosses, IntPtr stream) =>
        With(
            Models,
            "model",
            handle,
            (Handle: handle, Ids: ids, Type: (NativeIdType)idType, Layers: layers, Tokens: tokens, TopK: topK, Stride: layerStride, Rows: tokenStride, Valid: validTokens, Losses: loadBalanceLosses, ZLosses: routerZLosses, Stream: stream),
            static (model, a) =>
            {
                model.RequireWindowRing(a.Handle, "it can be read, not recorded into; load a checkpoint to record on");
                model.Record(a.Ids, a.Type, a.Layers, a.Tokens, a.TopK, a.Stride, a.Rows, a.Valid, a.Losses, a.ZLosses, a.Stream);
            },
            onDevice: false);

    /// <summary>Backs <c>moegs_model_accelerator</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelAccelerator(long handle, byte** destination)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_model_accelerator writes the accelerator's name there.");
        }

        *destination = null;
        return With(Models, "model", handle, (IntPtr)destination, static (model, d) => *(byte**)d = (byte*)KindNames[model.Kind], onDevice: false);
    }

    /// <summary>Backs <c>moegs_model_summary</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelSummary(long handle, int* expertRanks, NativeModelBalance* destination, NativeLayerBalance* window, NativeLayerBalance* sinceStart)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_model_summary writes the model's figures there.");
        }

        return ReadModel(handle, model => model.Summary(model.Stats.Options.Window, expertRanks, destination, window, sinceStart));
    }

    /// <summary>Backs <c>moegs_model_recent_summary</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelRecentSummary(long handle, int recentSteps, int* expertRanks, NativeModelBalance* destination, NativeLayerBalance* window, NativeLayerBalance* sinceStart)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_model_recent_summary writes the model's figures there.");
        }

        return ReadModel(handle, model =>
        {
            NativeChecks.RecentSteps(recentSteps, model.Stats.Options.Window);
            model.CheckRecentSteps(recentSteps);
            model.Summary(recentSteps, expertRanks, destination, window, sinceStart);
        });
    }

    /// <summary>Backs <c>moegs_model_read</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelRead(
        long handle,
        int recentSteps,
        int* expertRanks,
        NativeModelBalance* destination,
        NativeLayerBalance* window,
        NativeLayerBalance* sinceStart,
        NativeModelBalance* recent,
        NativeLayerBalance* recentLayers,
        NativeLayerTotals* totals,
        ulong* windowLoad,
        ulong* expertCounts,
        int capacity)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_model_read writes the model's figures there.");
        }

        return ReadModel(handle, model =>
        {
            if (recentSteps != 0)
            {
                NativeChecks.RecentSteps(recentSteps, model.Stats.Options.Window, none: "0 for none");
                model.CheckRecentSteps(recentSteps);
                if (recent is null)
                {
                    throw new NativeArgumentException($"recent_out is NULL with recent_steps = {recentSteps}: moegs_model_read writes the newest steps' figures there (recent_steps 0 reads none).");
                }
            }

            if (windowLoad is not null || expertCounts is not null)
            {
                var arrays = (windowLoad is not null, expertCounts is not null) switch
                {
                    (true, true) => "window_load and expert_counts each",
                    (true, false) => "window_load",
                    _ => "expert_counts",
                };
                NativeChecks.WindowCapacity(capacity, model.Stats.Layers, model.Stats.Experts, arrays);
            }

            model.Read(recentSteps, expertRanks, destination, window, sinceStart, recent, recentLayers, totals, windowLoad, expertCounts);
        });
    }

    /// <summary>The bytes of one element of <see cref="ModelRead"/>'s per-layer totals, checked by libmoegs and bindings as <see cref="SnapshotSize"/>.</summary>
    [UnmanagedCallersOnly]
    public static int LayerTotalsSize() => sizeof(NativeLayerTotals);

    /// <summary>The bytes <see cref="ModelSummary"/> writes to its out, checked by libmoegs and bindings as <see cref="SnapshotSize"/>.</summary>
    [UnmanagedCallersOnly]
    public static int ModelBalanceSize() => sizeof(NativeModelBalance);

    /// <summary>The bytes of one element of <see cref="ModelSummary"/>'s per-layer arrays.</summary>
    [UnmanagedCallersOnly]
    public static int LayerBalanceSize() => sizeof(NativeLayerBalance);

    /// <summary>Backs <c>moegs_model_window_load</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelWindowLoad(long handle, ulong* destination, int capacity)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "dst is NULL: moegs_model_window_load copies layers * experts counts there.");
        }

        return ReadModel(handle, model =>
        {
            NativeChecks.WindowCapacity(capacity, model.Stats.Layers, model.Stats.Experts);
            model.Stats.WindowLoad(new Span<ulong>(destination, capacity));
        });
    }

    /// <summary>Backs <c>moegs_model_recent_window_load</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelRecentWindowLoad(long handle, int recentSteps, ulong* destination, int capacity)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "dst is NULL: moegs_model_recent_window_load copies layers * experts counts there.");
        }

        return ReadModel(handle, model =>
        {
            NativeChecks.RecentSteps(recentSteps, model.Stats.Options.Window);
            model.CheckRecentSteps(recentSteps);
            NativeChecks.WindowCapacity(capacity, model.Stats.Layers, model.Stats.Experts);
            model.Stats.WindowLoad(recentSteps, new Span<ulong>(destination, capacity));
        });
    }

    /// <remarks>
    /// Not <c>onDevice</c>: the model makes ILGPU's context current for the fold itself, and orders the
    /// reader's stream in the caller's context, where a NULL stream is the caller's default stream.
    /// </remarks>
    [UnmanagedCallersOnly]
    public static int ModelDeviceArrays(long handle, IntPtr stream, NativeModelArrays* destination)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_model_device_arrays writes the arrays' addresses there.");
        }

        // A failed call leaves no stale address behind for a caller who skips the status.
        *destination = default;
        return With(
            Models,
            "model",
            handle,
            (Handle: handle, Stream: stream, Out: (IntPtr)destination),
            static (model, a) =>
            {
                var arrays = model.DeviceArrays(a.Handle, a.Stream);
                arrays.Accelerator = KindNames[model.Kind];
                *(NativeModelArrays*)a.Out = arrays;
            },
            onDevice: false);
    }

    /// <summary>The bytes <see cref="ModelDeviceArrays"/> writes, checked by libmoegs and bindings as <see cref="SnapshotSize"/>.</summary>
    [UnmanagedCallersOnly]
    public static int ModelArraysSize() => sizeof(NativeModelArrays);

    /// <summary>Backs <c>moegs_model_layer_snapshot</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelLayerSnapshot(long handle, int layer, NativeSnapshot* destination)
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, "out is NULL: moegs_model_layer_snapshot writes the layer's snapshot there.");
        }

        return ReadModel(handle, model =>
        {
            NativeChecks.Layer(layer, model.Stats.Layers);
            using var stats = model.Stats.Layer(layer);
            using var s = stats.Snapshot();
            NativeStruct.Write(destination, NativeSnapshot.From(s));
        });
    }

    /// <summary>Backs <c>moegs_model_layer_expert_counts</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelLayerExpertCounts(long handle, int layer, ulong* destination, int capacity) =>
        CopyOutLayer(handle, layer, destination, capacity, "moegs_model_layer_expert_counts copies each expert's count", stats => stats.ExpertTokenCounts);

    /// <summary>Backs <c>moegs_model_layer_expert_utilization</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelLayerExpertUtilization(long handle, int layer, float* destination, int capacity) =>
        CopyOutLayer(handle, layer, destination, capacity, "moegs_model_layer_expert_utilization copies each expert's utilization", stats => stats.ExpertUtilization);

    /// <summary>Backs <c>moegs_model_layer_decayed_utilization</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelLayerDecayedUtilization(long handle, int layer, float* destination, int capacity) =>
        CopyOutLayer(handle, layer, destination, capacity, "moegs_model_layer_decayed_utilization copies each expert's decayed utilization", stats =>
            stats.Options.UtilizationDecay is null
                ? throw new NativeArgumentException($"handle {handle}: this model keeps no decayed utilization: create it with a utilization_decay in [0, 1), not one below 0.")
                : stats.DecayedExpertUtilization);

    /// <summary>Backs <c>moegs_model_reset</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelReset(long handle) => WithModel(handle, model => model.Stats.Reset());

    /// <summary>Backs <c>moegs_model_destroy</c>; include/moegs.h gives its contract.</summary>
    [UnmanagedCallersOnly]
    public static int ModelDestroy(long handle) => Remove(Models, "model", handle);

    /// <summary>
    /// Copies one value per expert of a model's layer: all <c>experts</c> of them, zeros before the layer's
    /// first step (a layer's lists are empty until then, as a fresh aggregator's).
    /// </summary>
    private static int CopyOutLayer<T>(long handle, int layer, T* destination, int capacity, string copies, Func<RoutingStats, IReadOnlyList<T>> read)
        where T : unmanaged
    {
        if (destination is null)
        {
            return Fail(NativeStatus.InvalidArgument, $"dst is NULL: {copies} there (capacity values at most).");
        }

        return ReadModel(handle, model =>
        {
            NativeChecks.Layer(layer, model.Stats.Layers);
            NativeChecks.Capacity(capacity, model.Stats.Experts);
            using var stats = model.Stats.Layer(layer);
            var values = read(stats);
            var span = new Span<T>(destination, model.Stats.Experts);
            span.Clear();
            for (var i = 0; i < values.Count; i++)
            {
                span[i] = values[i];
            }
        });
    }
}
