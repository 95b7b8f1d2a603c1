using ILGPU.Runtime.OpenCL;
using MoeGpuStats.Device;
using MoeGpuStats.Kernels.Model;
namespace MoeGpuStats.Native;

/// <summary>
/// The C API's argument checks, before anything reaches the statistics: a refused call leaves them as
/// they were, and its message names the C argument, its value and what is allowed, on one line.
/// </summary>
internal static class NativeChecks
{
    /// <summary>The most ids one record reads: the engines index a batch with 32-bit integers.</summary>
    public const long MaxIdsPerRecord = int.MaxValue;

    /// <summary>A model's window when the C caller passes 0: the library's default (vLLM's and SGLang's ring).</summary>
    public static readonly int DefaultWindow = new ModelRoutingStatsOptions().Window;

    /// <summary>The accelerator names the C API takes: the library's, and <c>auto</c> (or NULL) for the best present.</summary>
    public static readonly string[] Accelerators = ["auto", .. AcceleratorSelection.Names];

    public static void Create(string accelerator, int experts, int expertCapacity)
    {
        NativeDevice.CheckAutoChoice(accelerator);
        // Every accelerator but "managed" keeps its per-expert state on a device engine of fixed size;
        // the managed engine keeps it in .NET arrays. "auto" that MOEGS_ACCELERATOR sends to the managed
        // engine takes what "managed" takes, as RoutingStats.Create does; else "auto" may pick a device.
        var managed = accelerator == "managed" || (accelerator == "auto" && NativeDevice.AutoChoice() == "managed");
        var most = managed ? RoutingStatsOptions.MaxExperts : RoutingStatsOptions.MaxDeviceExperts;
        if (experts < 1 || experts > most)
        {
            // Where the variable chose the engine, its name says why this limit applies, not another.
            var chosen = accelerator == "auto" ? NativeDevice.AutoChoice() : "";
            var on = AcceleratorSelection.Names.Contains(chosen) ? $"auto ({RoutingStats.AcceleratorVariable} = {chosen}, which \"auto\" follows)" : accelerator;
            var why = managed ? " (the library's limit)" : $" (the device engine's limit; managed takes up to {RoutingStatsOptions.MaxExperts})";
            throw new NativeArgumentException($"experts = {experts}: must lie in [1, {most}] on {on}{why}.");
        }

        ExpertCapacity(expertCapacity);
    }

    /// <summary>MOEGS_MODEL_SKIP_EMPTY_STEPS of include/moegs.h.</summary>
    public const uint SkipEmptySteps = 1;

    public static void ModelCreate(string accelerator, int layers, int experts, int expertCapacity, int window, float utilizationDecay, uint flags)
    {
        NativeDevice.CheckAutoChoice(accelerator);
        if (layers < 1 || layers > ModelRoutingStatsOptions.MaxLayers)
        {
            throw new NativeArgumentException($"layers = {layers}: must lie in [1, {ModelRoutingStatsOptions.MaxLayers}].");
        }

        // A model keeps its layers in the device engine's layout on every accelerator, the managed engine included.
        if (experts < 1 || experts > RoutingStatsOptions.MaxDeviceExperts)
        {
            throw new NativeArgumentException($"experts = {experts}: must lie in [1, {RoutingStatsOptions.MaxDeviceExperts}] (a model's limit on every accelerator, managed included).");
        }

        ExpertCapacity(expertCapacity);
        if (window < 0)
        {
            throw new NativeArgumentException($"window = {window}: must be 0 (the default of {DefaultWindow} steps) or a step count in [1, {int.MaxValue}].");
        }

        var entries = (long)(window == 0 ? DefaultWindow : window) * layers * experts;
        if (entries > ModelRoutingStatsOptions.MaxWindowEntries)
        {
            throw new NativeArgumentException(
                $"window = {window}: window * layers * experts = {(window == 0 ? DefaultWindow : window)} * {layers} * {experts} = {entries} counts; the window ring holds at most {ModelRoutingStatsOptions.MaxWindowEntries}: give a window of 1 to {ModelRoutingStatsOptions.LongestWindow(layers, experts)} steps.");
        }

        if (float.IsNaN(utilizationDecay) || utilizationDecay >= 1f)
        {
            throw new NativeArgumentException($"utilization_decay = {utilizationDecay}: must be below 0 (no decayed utilization; -0.0 is 0) or lie in [0, 1).");
        }

        if ((flags & ~SkipEmptySteps) != 0)
        {
            throw new NativeArgumentException($"flags = 0x{flags:X}: the flags are MOEGS_MODEL_SKIP_EMPTY_STEPS (0x1); 0x{flags & ~SkipEmptySteps:X} is none of them.");
        }
    }

    /// <summary>Checks a model's step; returns the strides (0 resolved: a token stride of <c>top_k</c>, a layer stride of <c>tokens * token_stride</c>) and the ids the step spans.</summary>
    public static unsafe (long LayerStride, long TokenStride, long Length) ModelRecord(
        string kind, ModelRoutingStatsOptions options, IntPtr ids, NativeIdType idType, int layers, int tokens, int topK, long layerStride, long tokenStride,
        IntPtr validTokens, IntPtr loadBalanceLosses, IntPtr routerZLosses, IntPtr stream)
    {
        var idBytes = idType switch
        {
            NativeIdType.Int32 => sizeof(int),
            NativeIdType.Int64 => sizeof(long),
            NativeIdType.Int16 => sizeof(short),
            _ => throw new NativeArgumentException($"id_type = {(int)idType}: must be MOEGS_IDS_INT32 (0), MOEGS_IDS_INT64 (1) or MOEGS_IDS_INT16 (2)."),
        };
        if (layers != options.Layers)
        {
            throw new NativeArgumentException($"layers = {layers}: must equal the model's layers, {options.Layers}.");
        }

        var perLayer = Shape(tokens, topK);
        if (tokenStride < 0 || (tokenStride > 0 && tokenStride < topK))
        {
            throw new NativeArgumentException($"token_stride = {tokenStride}: must be 0 (each token's ids packed) or >= top_k = {topK}.");
        }

        if (layerStride < 0)
        {
            throw new NativeArgumentException($"layer_stride = {layerStride}: must be 0 (the layers packed) or positive.");
        }

        var rows = tokenStride == 0 ? topK : tokenStride;
        var stride = layerStride != 0 ? layerStride
            : ModelIdLayout.PackedLayerStride(tokens, rows)
            ?? throw new NativeArgumentException($"token_stride = {tokenStride}: tokens * token_stride passes int64; give layer_stride.");
        if (!ModelIdLayout.Supported(layers, tokens, topK, stride, rows))
        {
            throw rows == topK
                ? new NativeArgumentException($"layer_stride = {layerStride}: must be 0 (the layers packed) or >= tokens * top_k = {tokens} * {topK} = {perLayer}.")
                : new NativeArgumentException(
                    $"layer_stride = {layerStride}, token_stride = {tokenStride}: the layers lie neither one after another nor interleaved token by token; layers one after another need layer_stride >= (tokens - 1) * token_stride + top_k, layers interleaved ([tokens, layers, top_k]) need top_k <= layer_stride and (layers - 1) * layer_stride + top_k <= token_stride.");
        }

        // Past this many ids their bytes overflow an int64, and the address of a layer's ids wraps around
        // (a stride of 2^62 int32 ids would read layer 1 from layer 0's memory).
        var maxIds = long.MaxValue / idBytes;
        var length = ModelIdLayout.StepExtent(layers, stride, tokens, topK, rows) is { } extent && extent <= maxIds
            ? extent
            : throw new NativeArgumentException(
                $"layer_stride = {layerStride}, token_stride = {tokenStride}: (layers - 1) * layer_stride + (tokens - 1) * token_stride + top_k exceeds {maxIds} ids (their bytes, {idBytes} each, must fit in an int64).");

        // The managed engine reads the step from one .NET span.
        if (kind == "managed" && length > MaxIdsPerRecord)
        {
            throw new NativeArgumentException(
                $"layers = {layers}, tokens = {tokens}, top_k = {topK}, layer_stride = {layerStride}, token_stride = {tokenStride}: the step spans {length} ids; the managed engine reads at most {MaxIdsPerRecord} per step.");
        }

        if (ids == IntPtr.Zero && length > 0)
        {
            throw new NativeArgumentException($"ids is NULL with {length} ids to read: NULL is allowed only when the step reads none (tokens is 0).");
        }

        Aligned(kind, "ids", ids, idBytes);
        Aligned(kind, "valid_tokens", validTokens);
        Aligned(kind, "load_balance_losses", loadBalanceLosses);
        Aligned(kind, "router_z_losses", routerZLosses);

        // Host memory (cpu, managed) can be read here: a non-finite loss is refused as moegs_record refuses one.
        if (kind is "cpu" or "managed")
        {
            FiniteLosses("load_balance_losses", (float*)loadBalanceLosses, layers);
            FiniteLosses("router_z_losses", (float*)routerZLosses, layers);
        }

        Stream(kind, stream);
        return (stride, rows, length);
    }

    /// <summary>Only a model on CUDA or the CPU accelerator has arrays at an address; a stream orders the export only on CUDA.</summary>
    public static void DeviceArrays(long handle, string kind, IntPtr stream)
    {
        if (kind is not ("cuda" or "cpu"))
        {
            var why = kind == "opencl"
                ? "an OpenCL buffer is a cl_mem, not an address"
                : "the managed engine keeps its counts in .NET arrays, which the runtime moves";
            throw new NativeArgumentException(
                $"handle = {handle}: a model on {kind}; moegs_model_device_arrays needs a model on cuda or cpu ({why}). Read moegs_model_window_load (a copy) instead.");
        }

        if (stream != IntPtr.Zero && kind != "cuda")
        {
            throw new NativeArgumentException($"stream = 0x{stream:x}: a stream orders the export only on cuda; on {kind} the call finishes the fold before it returns: pass NULL.");
        }
    }

    public static void Layer(int layer, int layers)
    {
        if (layer < 0 || layer >= layers)
        {
            throw new NativeArgumentException($"layer = {layer}: must lie in [0, {layers - 1}] (the model's {MoeGpuStats.Plural.Of(layers, "layer")}).");
        }
    }

    /// <summary>Refuses <paramref name="recentSteps"/> outside <c>[1, window]</c>; <paramref name="none"/>, when given, names the value that reads no recent steps.</summary>
    public static void RecentSteps(int recentSteps, int window, string? none = null)
    {
        if (recentSteps < 1 || recentSteps > window)
        {
            throw new NativeArgumentException($"recent_steps = {recentSteps}: must lie in [1, {window}] (the model's window){(none is null ? "" : $", or {none}")}.");
        }
    }

    /// <summary>Refuses a <paramref name="capacity"/> below <c>layers × experts</c> values for the array named <paramref name="array"/>.</summary>
    public static void WindowCapacity(int capacity, int layers, int experts, string array = "dst")
    {
        var needed = layers * experts;
        if (capacity < needed)
        {
            throw new NativeArgumentException($"capacity = {capacity}: {array} must hold layers * experts = {layers} * {experts} = {needed} values, capacity >= {needed}.");
        }
    }

    /// <summary>The placement, checked: one rank per expert in [0, experts), and every rank up to the largest holding an expert.</summary>
    public static int[] Placement(ReadOnlySpan<int> expertRanks)
    {
        for (var e = 0; e < expertRanks.Length; e++)
        {
            if (expertRanks[e] < 0 || expertRanks[e] >= expertRanks.Length)
            {
                throw new NativeArgumentException(
                    $"expert_ranks[{e}] = {expertRanks[e]}: a rank must lie in [0, experts - 1 = {expertRanks.Length - 1}] (at most one rank per expert).");
            }
        }

        var ranks = expertRanks.ToArray();
        if (ModelStepChecks.EmptyRank(ranks) is var (empty, largest))
        {
            throw new NativeArgumentException(
                $"expert_ranks: rank {empty} holds no expert while rank {largest} holds one; ranks are numbered from 0 with none left empty{(empty == 0 ? " (numbered from 1? subtract 1)" : "")}.");
        }

        return ranks;
    }

    public static void Record(string kind, IntPtr ids, long length, int tokens, int topK, float loadBalanceLoss, float routerZLoss, IntPtr stream)
    {
        var needed = Shape(tokens, topK);

        if (length < 0)
        {
            throw new NativeArgumentException($"length = {length}: must be >= tokens * top_k = {tokens} * {topK} = {needed}.");
        }

        if (length < needed)
        {
            throw new NativeArgumentException($"length = {length}: the ids hold fewer than tokens * top_k = {tokens} * {topK} = {needed} values.");
        }

        if (ids == IntPtr.Zero && length > 0)
        {
            throw new NativeArgumentException($"ids is NULL with length = {length}: NULL is allowed only with length 0.");
        }

        Aligned(kind, "ids", ids);
        Finite("load_balance_loss", loadBalanceLoss);
        Finite("router_z_loss", routerZLoss);
        Stream(kind, stream);
    }

    public static void Latency(long nanoseconds)
    {
        if (nanoseconds < 0)
        {
            throw new NativeArgumentException($"nanoseconds = {nanoseconds}: a latency must lie in [0, {long.MaxValue}].");
        }
    }

    public static void Capacity(int capacity, int experts)
    {
        if (capacity < experts)
        {
            throw new NativeArgumentException($"capacity = {capacity}: dst must hold one value per expert, capacity >= {experts}.");
        }
    }

    /// <summary>
    /// A model's state that the engine on <paramref name="kind"/> could not allocate, in the C caller's words: the library's
    /// message names its own option (<c>Window</c>) or .NET's types, where C and Python callers know the <c>window</c>.
    /// </summary>
    public static InsufficientMemoryException StateTooLarge(string kind, ModelRoutingStatsOptions options, InsufficientMemoryException inner)
    {
        var window = $"{MoeGpuStats.Plural.Of(options.Window, "step")} x {MoeGpuStats.Plural.Of(options.Layers, "layer")} x {MoeGpuStats.Plural.Of(options.Experts, "expert")}";
        var message = kind == "managed"
            ? FormattableString.Invariant(
                $"the model's window of {window} needs {MoeGpuStats.Collections.ExpertLoadWindow.StepBytes(options.Layers, options.Experts, options.Window):N0} bytes of managed memory, more than this process can allocate; give a smaller window.")
            : FormattableString.Invariant(
                $"the model's state (a window of {window}) needs {options.DeviceStateBytes():N0} bytes of {(kind == "cpu" ? "host" : "device")} memory, more than the {kind} accelerator can allocate; give a smaller window.");
        return new InsufficientMemoryException(message, inner);
    }

    /// <summary>
    /// What an OpenCL error says to a C caller: ILGPU's exception carries the code alone, with .NET's stock message. A
    /// pointer that is no cl_mem is the error a caller can make (moegs.h: every pointer on "opencl" is one), and the
    /// driver's code for it depends on the bytes it finds there (PoCL: CL_INVALID_MEM_OBJECT, CL_MISALIGNED_SUB_BUFFER_OFFSET),
    /// so every code names it.
    /// </summary>
    public static string OpenCl(CLError error) => FormattableString.Invariant(
        $"the OpenCL driver refused the call with {error} ({(int)error}); on \"opencl\" the ids, valid-token and loss pointers must be cl_mem objects, and a host or CUDA pointer there draws an error of any code.");

    /// <summary>
    /// Refuses an unknown accelerator <paramref name="name"/> (normalized), naming it as <paramref name="given"/>; a name
    /// that was not UTF-8 (<paramref name="utf8"/> false; <see cref="Utf8"/>) is no accelerator's, and said to be not UTF-8.
    /// </summary>
    public static void Accelerator(string name, string given, bool utf8 = true)
    {
        if (!utf8 || Array.IndexOf(Accelerators, name) < 0)
        {
            throw new NativeArgumentException($"accelerator = \"{Escaped(given)}\"{(utf8 ? "" : ", not UTF-8 (undecodable bytes shown as \\xNN)")}: must be one of auto, {string.Join(", ", AcceleratorSelection.Names)} (no name: auto); case and surrounding blanks do not count.");
        }
    }

    /// <summary>
    /// A C string argument's <paramref name="bytes"/> as text: UTF-8 decoded strictly; <paramref name="utf8"/> says
    /// whether they were UTF-8. Where they were not, the text is for a message alone: each byte that is not part of UTF-8
    /// is shown as <c>\xNN</c> (never U+FFFD, which would show another value than the caller's), and a backslash as
    /// <c>\\</c>, so that a path holding the characters <c>\xff</c> reads apart from the byte 0xFF.
    /// </summary>
    public static string Utf8(ReadOnlySpan<byte> bytes, out bool utf8)
    {
        utf8 = System.Text.Unicode.Utf8.IsValid(bytes);
        if (utf8)
        {
            return System.Text.Encoding.UTF8.GetString(bytes);
        }

        var text = new System.Text.StringBuilder(bytes.Length + 8);
        while (!bytes.IsEmpty)
        {
            if (System.Text.Rune.DecodeFromUtf8(bytes, out var rune, out var consumed) == System.Buffers.OperationStatus.Done)
            {
                text.Append(rune.Value == '\\' ? "\\\\" : rune.ToString());
            }
            else
            {
                foreach (var b in bytes[..consumed])
                {
                    text.Append(FormattableString.Invariant($"\\x{b:x2}"));
                }
            }

            bytes = bytes[consumed..];
        }

        return text.ToString();
    }

    /// <summary>
    /// The caller's text, its first <paramref name="mostShown"/> characters, with line breaks and other characters a
    /// terminal acts on escaped (<see cref="UnsafeText.Escaped"/>), so that a message echoing it stays one short line,
    /// shown as written.
    /// </summary>
    public static string Escaped(string text, int mostShown = 64) => UnsafeText.Escaped(ShortText.Of(text, mostShown));

    private static void ExpertCapacity(int expertCapacity)
    {
        if (expertCapacity < 0)
        {
            throw new NativeArgumentException($"expert_capacity = {expertCapacity}: must be 0 (no capacity: nothing dropped; the capacity figures then assume the default of {CapacityStats.DefaultSlotsPerExpert} slots per expert) or a slot count in [1, {int.MaxValue}].");
        }
    }

    /// <summary>The ids of one layer's record, <c>tokens * top_k</c>, checked.</summary>
    private static long Shape(int tokens, int topK)
    {
        if (tokens < 0)
        {
            throw new NativeArgumentException($"tokens = {tokens}: must lie in [0, {int.MaxValue}].");
        }

        if (topK < 1)
        {
            throw new NativeArgumentException($"top_k = {topK}: must lie in [1, {int.MaxValue}].");
        }

        var needed = (long)tokens * topK;
        if (needed > MaxIdsPerRecord)
        {
            throw new NativeArgumentException($"tokens * top_k = {tokens} * {topK} = {needed} ids: one record reads at most {MaxIdsPerRecord}.");
        }

        return needed;
    }

    /// <summary>On OpenCL a buffer is a cl_mem handle, not an address; elsewhere a pointer must be a multiple of its values' size (<paramref name="bytes"/>), as a misaligned read faults on the GPU.</summary>
    private static void Aligned(string kind, string name, IntPtr pointer, int bytes = 4)
    {
        if (kind != "opencl" && pointer % bytes != 0)
        {
            throw new NativeArgumentException($"{name} = 0x{pointer:x}: must be aligned to {bytes} bytes (its values' size).");
        }
    }

    private static void Stream(string kind, IntPtr stream)
    {
        if (stream != IntPtr.Zero && kind != "cuda")
        {
            throw new NativeArgumentException($"stream = 0x{stream:x}: a stream orders records only on cuda; this handle runs on {kind}, pass NULL.");
        }
    }

    private static unsafe void FiniteLosses(string name, float* losses, int layers)
    {
        for (var l = 0; losses is not null && l < layers; l++)
        {
            if (!float.IsFinite(losses[l]))
            {
                throw new NativeArgumentException($"{name}[{l}] = {losses[l]}: must be finite.");
            }
        }
    }

    private static void Finite(string name, float loss)
    {
        if (!float.IsFinite(loss))
        {
            throw new NativeArgumentException($"{name} = {loss}: must be finite.");
        }
    }
}

/// <summary>The integer type of a model step's ids, as moegs_id_type numbers them.</summary>
internal enum NativeIdType
{
    /// <summary>MOEGS_IDS_INT32.</summary>
    Int32 = 0,

    /// <summary>MOEGS_IDS_INT64.</summary>
    Int64 = 1,

    /// <summary>MOEGS_IDS_INT16.</summary>
    Int16 = 2,
}

/// <summary>A refused C argument; the message is the C caller's, used verbatim.</summary>
internal sealed class NativeArgumentException(FormattableString message) : Exception(FormattableString.Invariant(message));

/// <summary>A file the C caller named that could not be written; the message names it and why.</summary>
internal sealed class NativeIoException(string message, Exception inner) : Exception(message, inner);
