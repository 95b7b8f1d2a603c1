using MoeGpuStats.Cli.Input;
using MoeGpuStats.Engines;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// What a trace's ids say about how it was recorded, for warnings after the replay: steps in which,
/// in every layer, every token went to the same experts in the same order, beyond what a router does by
/// chance (<see cref="ChanceDecades"/>: a server's warm-up and profiling passes of synthetic tokens, which
/// skew a trace's top experts), tokens routed to one expert twice (a router never does that: the file's
/// axes are likely not what the layout says), and steps of padding alone (an idle rank's dummy pass),
/// which count as batches of no load. An id that names no expert (−1, or −1 saved unsigned as 255) is
/// padding or invalid, which other warnings name: it is never a repeated or a shared expert, nor a pick
/// that makes alike tokens less likely. Steps are numbered as the file orders them, from 0.
/// </summary>
/// <param name="layers">Layers per step, each <c>[tokens, topK]</c> in the step's ids; 1 without a layers axis.</param>
/// <param name="topK">Experts per token.</param>
/// <param name="experts">Ids from 0 to one less name an expert: the experts per layer, or fewer where the largest id is −1 padding saved unsigned.</param>
/// <param name="layout">The file's layout, named in the warning about repeated experts; null for a trace without one (JSON lines).</param>
/// <param name="model">Whether the trace is replayed as a model (a layers axis), whose window a step of padding takes a place in.</param>
/// <param name="skipEmpty">Whether the model leaves out steps of no token (<see cref="ModelRoutingStatsOptions.SkipEmptySteps"/>): then the steps of padding alone are named in a note, not a warning.</param>
/// <param name="skipped">The file's steps left out before the first checked (<c>--skip-steps</c>).</param>
/// <param name="stepName">A step as warnings name it (<see cref="IRoutingTrace.StepName"/>).</param>
internal sealed class TraceChecks(int layers, int topK, int experts, IdLayout? layout, bool model, bool skipEmpty, int skipped, Func<int, string> stepName)
{
    /// <summary>
    /// How unlikely, in decades, a step's alike tokens must be from a router that picks its k experts uniformly before
    /// the step is named a warm-up pass: more than this, less than once in 10^9 steps. A real router is skewed, which
    /// makes alike tokens likelier than uniform routing does, hence the margin; a warm-up pass of hundreds of tokens,
    /// or of a deep model's layers (Mixtral's 32 of two top-2 tokens over 8 experts: 56 decades), clears it by far.
    /// </summary>
    internal const double ChanceDecades = 9;

    private int _checked;
    private int _synthetic;
    private int _first = -1;
    private int _last = -1;
    private int _firstReal = -1;
    private long _repeated;
    private int _repeatedStep = -1;
    private int _padding;
    private int _firstPadding = -1;

    /// <summary>
    /// For each expert, the stamp of the last token (or row) that named it (<see cref="FirstSight"/>): made once, for the first
    /// token checked. Stamps are 64-bit: a replay's tokens over all its steps and layers pass 2^31, never 2^63.
    /// </summary>
    private long[]? _seenIn;
    private long _stamp;

    /// <summary>
    /// <c>log10(E × (E − 1) × … × (E − n + 1))</c> at index n: the decades of the rows of n distinct experts in order a
    /// uniform router picks from, which each token past the first that repeats a row of n experts costs.
    /// </summary>
    private readonly double[] _rowDecades = RowDecades(topK, experts);

    /// <summary>Checks step <paramref name="step"/> of the file: <paramref name="ids"/> its layers' ids, <paramref name="tokens"/> tokens per layer.</summary>
    public void Check(int step, ReadOnlySpan<int> ids, int tokens)
    {
        _checked++;
        if (ids.Length > 0 && ids.IndexOfAnyExcept(ExpertHistogram.EmptySlot) < 0)
        {
            _padding++;
            _firstPadding = _firstPadding < 0 ? step : _firstPadding;
            return;
        }

        if (!Synthetic(ids, tokens))
        {
            // A step whose ids name no expert (padding saved unsigned, say) routed no token: it is no traffic either.
            _firstReal = _firstReal < 0 && ids.IndexOfAnyInRange(0, experts - 1) >= 0 ? step : _firstReal;
            CheckRepeats(step, ids, tokens);
            return;
        }

        // A warm-up pass's tokens (all ids 0, say) repeat an expert too: its own warning says what they are.
        _synthetic++;
        _first = _first < 0 ? step : _first;
        _last = step;
    }

    /// <summary>
    /// Whether every layer of the step routed its tokens alike, beyond chance (<see cref="ChanceDecades"/>), or sent
    /// them, even one, to one expert k (two or more) times: a warm-up pass of one token of zeros shows only that, and
    /// its warning, not the one about the layout, says what it is. Padding rows (k empty slots) are not tokens: a
    /// warm-up pass under CUDA graphs pads its alike tokens to the captured size.
    /// </summary>
    private bool Synthetic(ReadOnlySpan<int> ids, int tokens)
    {
        if (tokens == 0)
        {
            return false;
        }

        var decades = 0.0;
        for (var layer = 0; layer < layers; layer++)
        {
            if (AlikeDecades(ids.Slice(layer * tokens * topK, tokens * topK)) is not { } alike)
            {
                return false;
            }

            decades += alike;
        }

        return decades > ChanceDecades;
    }

    /// <summary>
    /// Null where one layer's tokens, padding rows aside, did not all go to the same experts in the same order; else
    /// how unlikely that is from a uniform router, in decades: infinite where their row names one expert k (two or
    /// more) times (no router does, so a token of zeros is warm-up even alone), else
    /// <c>(tokens − 1) × log10(E! / (E − n)!)</c> for the row's n distinct experts (its −1 and invalid ids pick none;
    /// none for one token).
    /// </summary>
    private double? AlikeDecades(ReadOnlySpan<int> ids)
    {
        var first = ReadOnlySpan<int>.Empty;
        var tokens = 0;
        for (var row = 0; row < ids.Length; row += topK)
        {
            var slots = ids.Slice(row, topK);
            if (slots.IndexOfAnyExcept(ExpertHistogram.EmptySlot) < 0)
            {
                continue;
            }

            if (tokens++ == 0)
            {
                first = slots;
            }
            else if (!slots.SequenceEqual(first))
            {
                return null;
            }
        }

        if (tokens == 0 || first.IndexOfAnyInRange(0, experts - 1) < 0)
        {
            // No token, or tokens whose ids name no expert: they routed nothing.
            return null;
        }

        if (topK >= 2 && OneExpert(first))
        {
            return double.PositiveInfinity;
        }

        return tokens == 1 ? null : (tokens - 1) * _rowDecades[DistinctExperts(first)];
    }

    /// <summary>The distinct experts a row names, marked as <see cref="CheckRepeats"/> marks a token's.</summary>
    private int DistinctExperts(ReadOnlySpan<int> slots)
    {
        _stamp++;
        var distinct = 0;
        foreach (var id in slots)
        {
            distinct += IsExpert(id) && FirstSight(id) ? 1 : 0;
        }

        return distinct;
    }

    /// <summary>The decades of rows of 0 to <paramref name="topK"/> distinct experts in order, of <paramref name="experts"/>.</summary>
    private static double[] RowDecades(int topK, int experts)
    {
        var decades = new double[Math.Min(topK, experts) + 1];
        for (var n = 1; n < decades.Length; n++)
        {
            decades[n] = decades[n - 1] + Math.Log10(experts - n + 1);
        }

        return decades;
    }

    /// <summary>Whether a token's ids all name one expert.</summary>
    private bool OneExpert(ReadOnlySpan<int> slots) => IsExpert(slots[0]) && slots.IndexOfAnyExcept(slots[0]) < 0;

    private bool IsExpert(int id) => (uint)id < (uint)experts;

    /// <summary>
    /// One-line warnings about the steps checked (all the replay's, or those before an interruption), none when the
    /// trace looks as a router writes it. A suggestion to skip steps never asks for all of them: it is made only where a
    /// step of other tokens follows those it leaves out.
    /// </summary>
    public IEnumerable<string> Warnings()
    {
        if (_synthetic > 0 && _firstReal < 0)
        {
            yield return _synthetic == _checked
                ? "warning: every step routed every token to the same experts, as warm-up passes of synthetic tokens do: this trace may hold no real traffic."
                : $"warning: every step routed every token to the same experts ({_synthetic:N0}) or held padding alone ({_padding:N0}), as warm-up and idle passes do: this trace may hold no real traffic.";
        }
        else if (_synthetic > 0)
        {
            var firstSteps = _first == skipped && _last == skipped + _synthetic - 1;
            var before = _last < _firstReal;
            yield return (firstSteps, before) switch
            {
                (true, _) => $"warning: the first {(_synthetic == 1 ? "step" : $"{_synthetic:N0} steps")}{After()} routed every token to the same experts, as warm-up passes of synthetic tokens do; --skip-steps {_last + 1} leaves them out.",
                (false, true) => $"warning: {Counted.Of(_synthetic, "step")} (first {stepName(_first)}, last {stepName(_last)}) routed every token to the same experts, as warm-up passes of synthetic tokens do, before the first step of other tokens (step {stepName(_firstReal)}); --skip-steps {_last + 1} leaves them out.",
                _ => $"warning: {Counted.Of(_synthetic, "step")} (first {stepName(_first)}, last {stepName(_last)}) routed every token to the same experts, as warm-up passes of synthetic tokens do; their counts are in the report.",
            };
        }

        if (_padding > 0 && skipEmpty)
        {
            yield return $"note: {Counted.Of(_padding, "step")} held padding alone (-1), no token (the first is step {stepName(_firstPadding)}): left out (--skip-empty-steps), in no statistic and in no place of the window.";
        }
        else if (_padding > 0)
        {
            // The seed's record counts a batch of no token as one whose experts all had a 0 % share; a
            // model's window counts it as a step.
            var effect = model
                ? "each counts as a step with no load, which takes a place in the window (--window) though it adds no load (the load and its balance are unaffected; a layer's saved snapshot counts it as a batch); --skip-empty-steps leaves them out"
                : "each counts as a batch with no load, which lowers every expert's mean share of a batch, so the shares add up to less than k x 100 % (the load and its balance are unaffected)";
            yield return $"warning: {Counted.Of(_padding, "step")} held padding alone (-1), no token (the first is step {stepName(_firstPadding)}): {effect}.";
        }

        if (_repeated > 0)
        {
            var question = layout is null ? "does each token's topk_ids hold its own k experts?" : $"is the file shaped [{layout.Name}] (--layout)?";
            yield return $"warning: {Counted.Of(_repeated, "token")} (the first in step {stepName(_repeatedStep)}) {(_repeated == 1 ? "names one expert twice among its" : "name one expert twice among their")} {topK} ids, which a top-k router never does: {question}";
        }
    }

    /// <summary>" after the N left out" where steps were skipped, so that the suggestion's larger N reads right.</summary>
    private string After() => skipped == 0 ? "" : $" after the {skipped:N0} left out";

    private void CheckRepeats(int step, ReadOnlySpan<int> ids, int tokens)
    {
        if (topK < 2)
        {
            return;
        }

        for (var token = 0; token < layers * tokens; token++)
        {
            _stamp++;
            foreach (var id in ids.Slice(token * topK, topK))
            {
                if (IsExpert(id) && !FirstSight(id))
                {
                    _repeated++;
                    _repeatedStep = _repeatedStep < 0 ? step : _repeatedStep;
                    break;
                }
            }
        }
    }

    /// <summary>
    /// Marks expert <paramref name="id"/> as named by the token (or row) of the current stamp; false where it already was.
    /// k is not bounded by E (a file's last axis can hold thousands of ids): each expert keeps the stamp of the last
    /// token that named it, so a token's check is one pass over its k ids, not every pair of them.
    /// </summary>
    private bool FirstSight(int id)
    {
        var seenIn = _seenIn ??= new long[experts];
        if (seenIn[id] == _stamp)
        {
            return false;
        }

        seenIn[id] = _stamp;
        return true;
    }
}
