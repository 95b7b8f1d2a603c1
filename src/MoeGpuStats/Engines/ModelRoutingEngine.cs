using ILGPU;
using static System.FormattableString;

namespace MoeGpuStats.Engines;

/// <summary>
/// Where a <see cref="ModelRoutingStats"/> keeps its layers' states and its window: in managed
/// memory or on an ILGPU accelerator. Inputs reach an engine validated.
/// </summary>
internal abstract class ModelRoutingEngine : IDisposable
{
    protected ModelRoutingEngine(ModelRoutingStatsOptions options) => Options = options;

    public ModelRoutingStatsOptions Options { get; }

    /// <summary>
    /// The lock every call takes, so calls are serialized; a device engine's read releases it for its copy
    /// back. <see cref="Lock"/> is reentrant: a read that calls another (<see cref="CanCutWindow"/> from a
    /// reading) takes it again on the same thread.
    /// </summary>
    protected Lock Gate { get; } = new();

    /// <summary>A short name for logs: "managed", "cpu", "cuda", "opencl".</summary>
    public abstract string Name { get; }

    /// <summary>The accelerator's name, or "managed".</summary>
    public abstract string DeviceName { get; }

    /// <summary>
    /// Whether the window keeps its ring of steps, so the model records on and checkpoints: false for a window
    /// restored from its load alone (a file without the ring, or a merge or snapshot of one) until a reset.
    /// </summary>
    public virtual bool KeepsWindowRing => true;

    /// <summary>
    /// Records one step of ids on a device: token t's topK ids of layer l at <c>l × layerStride + t × tokenStride</c>
    /// (strides resolved and checked, <see cref="ModelStepChecks.Validate"/>),
    /// of which the first <paramref name="validTokens"/>[0] rows count when that view is not empty
    /// (clamped to <c>[0, tokens]</c>); per-layer losses from views of <c>Layers</c> floats or empty ones.
    /// </summary>
    /// <typeparam name="T">The ids' type: int, long (one outside int's range is invalid) or short.</typeparam>
    public abstract void RecordStep<T>(ArrayView<T> ids, int tokens, int topK, long layerStride, long tokenStride, ArrayView<int> validTokens, ArrayView<float> loadBalanceLosses, ArrayView<float> routerZLosses)
        where T : unmanaged;

    /// <summary>Records one step of ids on the host, laid out as the view overload's; losses empty or <c>Layers</c> long.</summary>
    public abstract void RecordStep(ReadOnlySpan<int> ids, int tokens, int topK, long layerStride, long tokenStride, ReadOnlySpan<float> loadBalanceLosses, ReadOnlySpan<float> routerZLosses);

    /// <summary>Layer <paramref name="layer"/>'s state, read-only (recording goes through the model).</summary>
    public abstract RoutingStatsEngine Layer(int layer);

    /// <summary>
    /// Each expert's slots over the newest <paramref name="recentSteps"/> steps of the window (1 to
    /// <c>Window</c>; every step it holds where it holds fewer), <c>[layers, experts]</c> row-major.
    /// </summary>
    /// <exception cref="InvalidOperationException">Fewer steps than the window holds were asked of a window restored without its ring of steps.</exception>
    public ulong[] WindowLoad(int recentSteps)
    {
        var load = new ulong[Options.Layers * Options.Experts];
        WindowLoad(recentSteps, load);
        return load;
    }

    /// <summary>
    /// <see cref="WindowLoad(int)"/> written into the first <c>Layers × Experts</c> values of <paramref name="destination"/>
    /// (the caller checked its length); nothing is written where it throws.
    /// </summary>
    /// <exception cref="InvalidOperationException">As <see cref="WindowLoad(int)"/>'s.</exception>
    public abstract void WindowLoad(int recentSteps, Span<ulong> destination);

    /// <summary>
    /// The token counts and window load in device memory, the pending step folded first (enqueued on
    /// the engine's stream); null on an engine that keeps them in .NET arrays, which the runtime may move.
    /// </summary>
    public virtual ModelDeviceArrays? DeviceArrays() => null;

    /// <summary>
    /// One reading of the model under its lock (<see cref="ModelReadRequest"/>): per layer, the loads measured
    /// over the newest <c>RecentSteps</c> steps of the window (as <see cref="WindowLoad(int)"/>) and since the start,
    /// per expert or, with ranks (one per expert, each below <c>RankCount</c>), per rank; and the parts asked besides.
    /// </summary>
    /// <exception cref="InvalidOperationException">As <see cref="WindowLoad(int)"/>'s, for <c>RecentSteps</c>.</exception>
    public abstract ModelReading Read(ModelReadRequest request);

    /// <summary>
    /// <see cref="Read"/> begun without waiting: a device engine enqueues the reading and its copy back behind
    /// the steps before it and returns; an engine in managed memory reads at once.
    /// </summary>
    /// <exception cref="InvalidOperationException">As <see cref="Read"/>'s.</exception>
    public virtual PendingReading BeginRead(ModelReadRequest request) => PendingReading.Completed(Read(request));

    /// <summary>Whether <see cref="WindowLoad(int)"/> and <see cref="Read"/> can cut the window to its newest <paramref name="recentSteps"/> steps now (a window restored without its ring cannot, while it holds more).</summary>
    public virtual bool CanCutWindow(int recentSteps) => true;

    /// <summary>The error of a window restored without its ring when fewer steps than it holds are asked of it.</summary>
    protected InvalidOperationException NoRecentSteps(int recentSteps, int windowSteps) => new(
        Invariant($"recentSteps is {recentSteps}, fewer than the {windowSteps:N0} steps the window holds, but this model's window keeps its load and not its ring of steps (a model read from JSON, or a merge or snapshot of one): read the whole window (recentSteps {windowSteps:N0} to {Options.Window:N0})."));

    public abstract void Reset();

    /// <summary>A managed copy of the whole state; without the window's ring of steps (the largest part by far) unless <paramref name="withRing"/>.</summary>
    public abstract ModelState Export(bool withRing = true);

    public virtual void Dispose()
    {
    }

    /// <summary>
    /// Throws where <paramref name="disposed"/>, naming the public type: a layer's handle reaches the
    /// engine past the model's own check, and its caller knows a model, not an engine.
    /// </summary>
    protected static void ThrowIfDisposed(bool disposed) => Disposed.ThrowIf(disposed, nameof(ModelRoutingStats));
}

/// <summary>A model's whole state as plain arrays: what moves between engines, snapshots, merges and JSON.</summary>
internal sealed class ModelState
{
    /// <summary>Steps recorded.</summary>
    public ulong Steps;

    /// <summary>Steps in the window.</summary>
    public int WindowSteps;

    /// <summary>The ring position the next step writes.</summary>
    public int WindowPosition;

    /// <summary>Each layer's state.</summary>
    public RoutingState[] Layers = [];

    /// <summary>The window's load, <c>[layers, experts]</c>.</summary>
    public ulong[] WindowLoad = [];

    /// <summary>
    /// The window ring, <c>[rows, layers, experts]</c>: all <c>window</c> rows, or (before the window has wrapped)
    /// those of its <see cref="WindowSteps"/> steps alone, at positions 0 to <see cref="WindowPosition"/> − 1; null where
    /// the source (a JSON file) has only the window's load.
    /// </summary>
    public uint[]? WindowRing;
}
