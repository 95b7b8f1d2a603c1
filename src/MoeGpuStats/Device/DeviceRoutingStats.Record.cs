using ILGPU;
using MoeGpuStats.Engines;
using MoeGpuStats.Kernels;
using static System.FormattableString;

namespace MoeGpuStats.Device;

/// <summary>Records: one launch each, counting this record and folding the pending one.</summary>
public sealed partial class DeviceRoutingStats
{
    /// <summary>
    /// Enqueues one record from the router's top-k ids, laid out <c>[tokens, topK]</c>, and returns
    /// without waiting for the device. An id of −1 is an empty slot (a token of k of them is padding);
    /// other ids outside <c>[0, E)</c> are counted as invalid.
    /// </summary>
    /// <remarks>
    /// The ids are read when <see cref="Stream"/> reaches the record, not when this call returns:
    /// write them on <see cref="Stream"/>, or order the writer's stream against it (on CUDA with
    /// <see cref="Interop.CudaStreamBridge"/>). Another stream's write can overtake the record; on
    /// OpenCL, whose queues have no implicit order, it did (PoCL 5, counts of the next batch).
    /// </remarks>
    /// <param name="topKExpertIds">At least <c>tokens * topK</c> ids on <see cref="Accelerator"/> (memory owned by anyone).</param>
    /// <param name="tokens">Tokens in the batch, at least 0.</param>
    /// <param name="topK">Experts per token, at least 1.</param>
    /// <param name="loadBalanceLoss">The router's load-balancing loss, if it computed one on the host.</param>
    /// <param name="routerZLoss">The router's z-loss, if it computed one on the host.</param>
    /// <param name="tokensDropped">Dropped tokens; must be 0 when <see cref="RoutingStatsOptions.ExpertCapacity"/> is set, which derives the dropped slots.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topK"/> is below 1, or <paramref name="tokens"/> is negative.</exception>
    /// <exception cref="ArgumentException">The view is invalid, too short, more than 2^31 − 1 ids, on another accelerator or of a disposed buffer, a loss is not finite, or <paramref name="tokensDropped"/> is outside [0, tokens] or set beside a capacity.</exception>
    /// <exception cref="InvalidOperationException">No expert count is known (set <see cref="RoutingStatsOptions.Experts"/>).</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public void RecordRouting(ArrayView<int> topKExpertIds, int tokens, int topK, float loadBalanceLoss = 0f, float routerZLoss = 0f, int tokensDropped = 0)
    {
        ThrowIfUnusable();
        RecordChecks.Validate(_options, topKExpertIds.IsValid ? topKExpertIds.Length : 0, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss, nameof(topKExpertIds));
        ViewAccelerator.CheckAlive(topKExpertIds, nameof(topKExpertIds));
        RecordValidated(topKExpertIds, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);
    }

    /// <summary>The record from a view, for callers that ran <see cref="RecordChecks"/> already (the facade).</summary>
    internal void RecordValidated(ArrayView<int> topKExpertIds, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss)
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            var experts = RecordChecks.ResolveExperts(_options, _experts);
            var length = (long)tokens * topK;
            if (length > 0)
            {
                ViewAccelerator.Check(topKExpertIds, Accelerator, nameof(topKExpertIds), "engine");
            }

            Launch(length > 0 ? topKExpertIds.SubView(0, length) : EmptyIds, Arguments(experts, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss));
        }
    }

    /// <summary>
    /// Records a batch of top-k ids that is on the host: one copy to the device on the stream, which
    /// waits for it (<see cref="DeviceMemory.CopyFromHost"/>: the queued work first, so the caller may
    /// reuse the span at once), then one launch.
    /// </summary>
    /// <param name="topKExpertIds">At least <c>tokens * topK</c> ids, <c>[tokens, topK]</c>.</param>
    /// <param name="tokens">Tokens in the batch, at least 0.</param>
    /// <param name="topK">Experts per token, at least 1.</param>
    /// <param name="loadBalanceLoss">The router's load-balancing loss, finite.</param>
    /// <param name="routerZLoss">The router's z-loss, finite.</param>
    /// <param name="tokensDropped">Dropped tokens, 0 to <paramref name="tokens"/>; must be 0 when <see cref="RoutingStatsOptions.ExpertCapacity"/> is set.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="topK"/> is below 1, or <paramref name="tokens"/> is negative.</exception>
    /// <exception cref="ArgumentException">
    /// Too few ids, more than 2^31 − 1 (<c>tokens × topK</c>), a non-finite loss, or <paramref name="tokensDropped"/>
    /// outside [0, tokens] or set beside a capacity.
    /// </exception>
    /// <exception cref="InvalidOperationException">No expert count is known.</exception>
    /// <exception cref="InsufficientMemoryException">The device could not hold the batch's ids (the buffer they are copied into grows to the largest batch).</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public void RecordRouting(ReadOnlySpan<int> topKExpertIds, int tokens, int topK, float loadBalanceLoss = 0f, float routerZLoss = 0f, int tokensDropped = 0)
    {
        ThrowIfUnusable();
        RecordChecks.Validate(_options, topKExpertIds.Length, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss, nameof(topKExpertIds));
        RecordValidated(topKExpertIds, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss);
    }

    /// <summary>The record from host ids, for callers that ran <see cref="RecordChecks"/> already (the facade).</summary>
    internal void RecordValidated(ReadOnlySpan<int> topKExpertIds, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss)
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            var experts = RecordChecks.ResolveExperts(_options, _experts);
            var length = tokens * topK;
            if (_hostIds.Length < length)
            {
                var grown = Allocate<int>(length);
                // The pending record's launch may still be reading the old buffer; a free does not
                // wait for it on every API (CUDA's may, OpenCL's defers, neither is ILGPU's promise).
                Stream.Synchronize();
                _hostIds.Dispose();
                _hostIds = grown;
            }

            var view = _hostIds.View.SubView(0, length);
            DeviceMemory.CopyFromHost(Stream, view, topKExpertIds[..length]);
            Launch(view, Arguments(experts, tokens, topK, tokensDropped, loadBalanceLoss, routerZLoss));
        }
    }

    /// <summary>
    /// Records a decision whose histogram is on the host: one copy of E counts to the device
    /// (synchronous, so the caller may reuse the decision at once) and one launch.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="decision"/> is null.</exception>
    /// <exception cref="ArgumentException">The decision is invalid (see <see cref="RoutingStats.RecordRouting(RoutingDecision)"/>) or has too many experts.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public void RecordRouting(RoutingDecision decision)
    {
        ThrowIfUnusable();
        var experts = RoutingDecisionValidator.Validate(decision, nameof(decision));
        RecordValidated(decision, experts, nameof(decision));
    }

    /// <summary>
    /// The record of a decision that <see cref="RoutingDecisionValidator"/> accepted already with <paramref name="experts"/>
    /// experts (the facade, whose argument is <paramref name="paramName"/>).
    /// </summary>
    internal void RecordValidated(RoutingDecision decision, int experts, string paramName)
    {
        lock (_lock)
        {
            ThrowIfUnusable();
            if (experts > RoutingStatsOptions.MaxDeviceExperts)
            {
                throw new ArgumentException(Invariant($"The decision has {experts:N0} experts; the device engine holds at most {RoutingStatsOptions.MaxDeviceExperts:N0}."), paramName);
            }

            var counts = _decisionCounts.AsSpan(0, experts);
            RoutingDecisionValidator.ReadCounts(decision.ExpertCapacities, counts, paramName);
            var staged = _hostHistogram.AsSpan(0, experts);
            for (var i = 0; i < staged.Length; i++)
            {
                staged[i] = (ulong)counts[i];
            }

            // The copy waits for the stream, so the staging array is free again when it returns;
            // the buffer is free because the launch that folded its last record is done.
            DeviceMemory.CopyFromHost<ulong>(Stream, _batchHistogram.View.SubView(RoutingStateLayout.BufferStart(NextBuffer), staged.Length), staged);
            // TopK 0: a histogram the caller counted, whose units are tokens.
            Launch(EmptyIds, Arguments(experts, decision.TotalTokens, topK: 0, decision.TokensDropped, decision.LoadBalanceLoss, decision.RouterZLoss));
        }
    }

    private ArrayView<int> EmptyIds => _hostIds.View.SubView(0, 0);

    /// <summary>Arguments that name no record (batch buffer −1).</summary>
    private static RecordArguments NoRecord => new() { Buffer = -1 };

    /// <summary>The batch buffer the next record is counted into: not the pending record's (both are clear when none is pending).</summary>
    private int NextBuffer => RoutingStateLayout.NextBuffer(_pending.Buffer);

    /// <summary>Counts this record into the free batch buffer and folds the pending one, in one launch; this record is then pending.</summary>
    private void Launch(ArrayView<int> ids, RecordArguments arguments)
    {
        arguments.Buffer = NextBuffer;
        _pending = _record(Stream, ids, _views, arguments, _pending);
        _experts = arguments.Experts;
    }

    /// <summary>Folds the pending record, if any, so that the state on the device is complete (enqueued; no wait).</summary>
    private void FoldPending()
    {
        if (_pending.Buffer >= 0)
        {
            _record(Stream, EmptyIds, _views, NoRecord, _pending);
            _pending = NoRecord;
        }
    }

    private RecordArguments Arguments(int experts, int tokens, int topK, int tokensDropped, float loadBalanceLoss, float routerZLoss) => new()
    {
        Experts = experts,
        Tokens = tokens,
        TopK = topK,
        TokensDropped = tokensDropped,
        // A capacity derives drops from ids alone: a decision (TopK 0) reports its own.
        ExpertCapacity = topK > 0 ? _options.ExpertCapacity ?? 0 : 0,
        SlotsPerExpert = _options.SlotsPerExpert,
        LoadBalanceLoss = loadBalanceLoss,
        RouterZLoss = routerZLoss,
        UtilizationDecay = _options.UtilizationDecay ?? -1f,
    };
}
