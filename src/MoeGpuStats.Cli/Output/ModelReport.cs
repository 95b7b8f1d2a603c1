using System.Globalization;
using System.Text.Json;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// The report of a replay with a layers axis: the model's balance across layers, then each layer's,
/// worst first (the layers a rebalance should look at), over the window and since the start.
/// </summary>
internal static class ModelReport
{
    /// <summary>Layers listed per span in the text report without <c>--layers-shown</c>; <c>--json</c> lists them all.</summary>
    public const int ShownLayers = 10;

    private const int LabelWidth = 34;
    private const int ValueWidth = 14;

    /// <param name="output">Where the report goes.</param>
    /// <param name="summary">The model's balance.</param>
    /// <param name="counts">The model's counts over its layers.</param>
    /// <param name="heading">What ran, in one line (a file name in it is shown as written: <see cref="UnsafeText.Escaped"/>).</param>
    /// <param name="engine">Which engine counted and why; null for a snapshot read back, which no engine here counted.</param>
    /// <param name="times">The run's time per step; null for a snapshot read back, whose steps no one here timed.</param>
    /// <param name="ranks">The balance over expert-parallel ranks (<c>--ep-size</c>); null for none.</param>
    /// <param name="shown">Layers listed per span, worst first; 0 lists every layer.</param>
    public static void Print(TextWriter output, ModelRoutingSummary summary, ModelCounts counts, string heading, string? engine, StepTimes? times = null, EpBalance? ranks = null, int shown = ShownLayers)
    {
        var listed = shown == 0 ? int.MaxValue : shown;
        output.WriteLine(UnsafeText.Escaped(heading));
        if (engine is not null)
        {
            output.WriteLine($"engine: {engine}");
        }

        output.WriteLine();
        if (summary.Steps == 0)
        {
            output.WriteLine("Model: no step recorded, so no balance to report (until one is, every layer reads as balanced, by convention)");
        }
        else
        {
            output.WriteLine("Balancedness: a layer's mean expert load over its largest, 1 = every expert equally loaded");
            output.WriteLine("(loads are token-expert slots: a token routed to k experts counts for each);");
            output.WriteLine("Gini: 0 when every expert has the same load, (E - 1) / E when one has all of it;");
            output.WriteLine("top 10 %: the share of the slots on the hottest tenth of the experts (rounded up), ceil(E / 10) / E when even");
        }

        foreach (var (span, part) in Spans(summary, counts))
        {
            var balance = part(summary);
            output.WriteLine();
            output.WriteLine($"Model, {span}");
            Line(output, "min balancedness", Figure(balance.MinBalancedness), $"layer {balance.WorstLayer}, the worst");
            Line(output, "p10 balancedness", Figure(balance.P10Balancedness), "the 10th percentile across layers");
            Line(output, "median balancedness", Figure(balance.MedianBalancedness));
            Line(output, "mean balancedness", Figure(balance.MeanBalancedness));
            Line(output, "max balancedness", Figure(balance.MaxBalancedness), $"layer {balance.BestLayer}, the best");
            Line(output, "token-weighted balancedness", Figure(balance.TokenWeightedBalancedness), "sum of mean loads / sum of max loads: vLLM's formula, here over experts (vLLM logs it over EP ranks)");
            if (ranks is not null)
            {
                var byRank = part(ranks.Summary);
                output.WriteLine();
                output.WriteLine($"Model over {Counted.Of(ranks.Ranks, "EP rank")} ({Counted.Of(ranks.ExpertsPerRank, "expert")} each, in order, as vLLM places them before a rebalance), {span}");
                Line(output, "token-weighted balancedness", Figure(byRank.TokenWeightedBalancedness), "vLLM's logged balancedness");
                Line(output, "min balancedness", Figure(byRank.MinBalancedness), $"layer {byRank.WorstLayer}, the worst");
                Line(output, "mean balancedness", Figure(byRank.MeanBalancedness));
                Line(output, "max balancedness", Figure(byRank.MaxBalancedness), $"layer {byRank.BestLayer}, the best");
            }
            output.WriteLine();
            output.WriteLine($"Layers, worst first, {span}");
            output.WriteLine("  layer  balancedness  max/mean      CV   Gini  top 10 %  hottest  coldest  dead experts");
            var withoutLoad = false;
            foreach (var layer in WorstFirst(balance).Take(listed))
            {
                var b = balance.Layers[layer];
                withoutLoad |= b.Load == 0;
                var (hottest, coldest) = b.Load == 0 ? ("-", "-") : (Invariant($"{b.HottestExpert}"), Invariant($"{b.ColdestExpert}"));
                output.WriteLine(Invariant($"  {layer,5}  {Figure(b.Balancedness),12}  {b.MaxMeanRatio,8:0.00}  {b.CoefficientOfVariation,6:0.000}  {b.GiniCoefficient,5:0.000}  {b.Top10PercentShare,8:0.000}  {hottest,7}  {coldest,7}  {b.DeadExperts,12:N0}"));
            }

            if (withoutLoad)
            {
                output.WriteLine("  (-: a layer without load, whose balancedness is 1 by convention: nothing to balance)");
            }

            if (balance.Layers.Count > listed)
            {
                output.WriteLine($"  ... {Counted.Of((ulong)(balance.Layers.Count - listed), "more layer")}, at least as well balanced (--layers-shown 0 or --json lists every layer)");
            }
        }

        output.WriteLine();
        output.WriteLine("Counts, all layers, since the start");
        var (fewest, most) = counts.Tokens;
        Line(output, "tokens per layer", fewest == most ? Invariant($"{most:N0}") : Invariant($"{fewest:N0} to {most:N0}"), "padding left out");
        Line(output, "routed slots", Invariant($"{counts.RoutedSlots:N0}"));
        Line(output, "invalid expert ids", Invariant($"{counts.InvalidExpertIds:N0}"), counts.InvalidExpertIds == 0 ? "" : $"{ModelCounts.Percent(counts.InvalidExpertIds, counts.InvalidExpertIds + counts.RoutedSlots)} of the ids other than -1: in no expert's load");
        if (counts.Capacity is { } capacity)
        {
            Line(output, "slots dropped", Invariant($"{counts.SlotsDropped:N0}"), $"{ModelCounts.Percent(counts.SlotsDropped, counts.RoutedSlots)} of routed slots, over {capacity:N0} per expert per step");
        }

        output.WriteLine();
        output.WriteLine($"Checks at {AlertChecks.Rules}: expert load over the window, counts since the start");
        foreach (var (label, value, note) in AlertChecks.Model(summary.Window, counts))
        {
            Line(output, label, value, note);
        }

        if (times is not null)
        {
            output.WriteLine();
            output.WriteLine($"Time per step: {times.Timed}");
            if (times.Latency.TotalMeasurements > 0)
            {
                Line(output, "mean", TimeSpread.Milliseconds(times.Latency.AverageLatency()));
                foreach (var (label, value, note) in TimeSpread.Of(times.Latency))
                {
                    Line(output, label, value, note);
                }

                if (times.TokensPerSecond is { } tokensPerSecond)
                {
                    Line(output, "tokens per second", FigureText.Fixed(tokensPerSecond, "#,0"), "the timed steps' tokens, each counted once for all layers (padding rows included) / their time");
                }
                else
                {
                    Line(output, "tokens per second", "-", "the timed steps took 0 ms in all");
                }
            }
            else
            {
                Line(output, "steps timed", "none");
            }
        }
    }

    /// <summary>
    /// The same figures as JSON, every layer in layer order; snake_case names, as the snapshot's and plan's
    /// JSON. A run's <paramref name="times"/> add <c>step_time</c>: the steps timed, the mean, the seed's
    /// 95th percentile of the newest (<c>p95_steps</c> of them; null of fewer than
    /// <see cref="TimeSpread.MinForPercentile"/>, as the text report) and the slowest in milliseconds, and
    /// the tokens a second, each counted once for all layers (padding rows included); null before a step is timed.
    /// </summary>
    /// <remarks>
    /// With <paramref name="ranks"/>, <c>ep_ranks</c> adds the model's figures over those ranks (<c>--ep-size</c>), window and since the start.
    /// With <paramref name="emptyStepsLeftOut"/> (a replay with <c>--skip-empty-steps</c>), <c>empty_steps_left_out</c> counts the
    /// steps of padding alone the model left out, which <c>steps</c> does not count.
    /// </remarks>
    public static void WriteJson(TextWriter output, ModelRoutingSummary summary, ModelCounts counts, int experts, StepTimes? times = null, EpBalance? ranks = null, int? emptyStepsLeftOut = null)
    {
        using var json = new JsonOut(output);
        var writer = json.Writer;
        writer.WriteStartObject();
        writer.WriteNumber("steps", summary.Steps);
        if (emptyStepsLeftOut is { } leftOut)
        {
            writer.WriteNumber("empty_steps_left_out", leftOut);
        }

        writer.WriteNumber("window_steps", summary.WindowSteps);
        if (counts.MergedParts > 1)
        {
            writer.WriteNumber("merged_parts", counts.MergedParts);
        }

        writer.WriteNumber("layers", summary.SinceStart.Layers.Count);
        writer.WriteNumber("experts", experts);
        var (fewest, most) = counts.Tokens;
        writer.WriteStartObject("tokens_per_layer");
        writer.WriteNumber("min", fewest);
        writer.WriteNumber("max", most);
        writer.WriteEndObject();
        WriteCount(writer, "routed_slots", counts.RoutedSlots);
        WriteCount(writer, "invalid_expert_ids", counts.InvalidExpertIds);
        if (counts.Capacity is { } capacity)
        {
            writer.WriteNumber("expert_capacity", capacity);
            WriteCount(writer, "slots_dropped", counts.SlotsDropped);
        }

        WriteLayerCounts(writer, counts);
        json.Drain();
        foreach (var (name, balance) in new[] { ("window", summary.Window), ("since_start", summary.SinceStart) })
        {
            writer.WriteStartObject(name);
            WriteAcrossLayers(writer, balance);
            WritePerLayer(writer, balance);
            writer.WriteEndObject();
            json.Drain();
        }

        if (ranks is not null)
        {
            writer.WriteStartObject("ep_ranks");
            writer.WriteNumber("ranks", ranks.Ranks);
            writer.WriteNumber("experts_per_rank", ranks.ExpertsPerRank);
            foreach (var (name, balance) in new[] { ("window", ranks.Summary.Window), ("since_start", ranks.Summary.SinceStart) })
            {
                writer.WriteStartObject(name);
                WriteAcrossLayers(writer, balance);
                WritePerLayer(writer, balance);
                writer.WriteEndObject();
                json.Drain();
            }

            writer.WriteEndObject();
        }

        if (times is not null)
        {
            var latency = times.Latency;
            var timed = latency.TotalMeasurements > 0;
            writer.WriteStartObject("step_time");
            writer.WriteNumber("timed_steps", latency.TotalMeasurements);
            WriteOrNull(writer, "mean_ms", timed ? latency.AverageLatency() : null);
            WriteOrNull(writer, "p95_ms", latency.TotalMeasurements >= TimeSpread.MinForPercentile ? latency.P95Latency() : null);
            writer.WriteNumber("p95_steps", Math.Min(latency.TotalMeasurements, (ulong)LatencyStats.WindowSize));
            WriteOrNull(writer, "max_ms", timed ? latency.MaxLatencyMs : null);
            WriteOrNull(writer, "tokens_per_second", times.TokensPerSecond);
            writer.WriteEndObject();
        }

        writer.WriteEndObject();
        json.Drain();
        output.WriteLine();
    }

    /// <summary>
    /// The spans the report gives, each named and picking its part of a summary (the model's and the one over EP ranks
    /// alike): none without steps (the report's note says so); one where the window holds every step, or all the load
    /// (merged ranks whose windows each held every step, or steps that left the window with no load), though it counts
    /// fewer steps; else the window and the time since the start.
    /// </summary>
    private static (string Span, Func<ModelRoutingSummary, BalanceSummary> Part)[] Spans(ModelRoutingSummary summary, ModelCounts counts)
    {
        if (summary.Steps == 0)
        {
            return [];
        }

        // A merge's steps are its snapshots' summed, and its window their newest steps added up step by step.
        var (summed, ofEach) = counts.MergedParts > 1
            ? ($" summed over {counts.MergedParts:N0} merged snapshots", $" (at most) of each of the {counts.MergedParts:N0} merged snapshots")
            : ("", "");
        if (summary.WindowSteps == (long)summary.Steps)
        {
            return [($"{OverAll(summary.Steps)}{summed} (the window holds them all)", s => s.SinceStart)];
        }

        return counts.WindowHoldsAll
            ? [($"{OverAll(summary.Steps)}{summed} (the window, {Counted.Of((ulong)summary.WindowSteps, "step")} long, holds all their load)", s => s.SinceStart)]
            : [($"over the window, the newest {Counted.Of((ulong)summary.WindowSteps, "step")}{ofEach}", s => s.Window), ($"since the start, {Counted.Of(summary.Steps, "step")}{summed}", s => s.SinceStart)];
    }

    /// <summary>"over all N steps", or "over its 1 step".</summary>
    private static string OverAll(ulong steps) => steps == 1 ? "over its 1 step" : $"over all {Counted.Of(steps, "step")}";

    /// <summary>One line while recording: the figures an operator watches, in the final report's units.</summary>
    public static string Periodic(ModelRoutingSummary summary, StepTimes times, int done, int total, TimeSpan elapsed) =>
        Invariant($"after {done:N0} of {total:N0} steps ({elapsed.TotalSeconds:0.0} s): window balancedness min {Figure(summary.Window.MinBalancedness)} (layer {summary.Window.WorstLayer}), mean {Figure(summary.Window.MeanBalancedness)}; ")
        + (times.Latency.TotalMeasurements > 0 ? $"recording {TimeSpread.Milliseconds(times.Latency.AverageLatency())} per step (mean)" : "no step timed yet");

    /// <summary>The figures across layers of <paramref name="balance"/>, into the object being written.</summary>
    private static void WriteAcrossLayers(Utf8JsonWriter writer, BalanceSummary balance)
    {
        writer.WriteNumber("min_balancedness", balance.MinBalancedness);
        writer.WriteNumber("p10_balancedness", balance.P10Balancedness);
        writer.WriteNumber("median_balancedness", balance.MedianBalancedness);
        writer.WriteNumber("mean_balancedness", balance.MeanBalancedness);
        writer.WriteNumber("max_balancedness", balance.MaxBalancedness);
        writer.WriteNumber("token_weighted_balancedness", balance.TokenWeightedBalancedness);
        writer.WriteNumber("worst_layer", balance.WorstLayer);
        writer.WriteNumber("best_layer", balance.BestLayer);
    }

    /// <summary><c>per_layer</c>: each layer's balance over the span, in layer order, named as a model's summary names it in C and Python.</summary>
    private static void WritePerLayer(Utf8JsonWriter writer, BalanceSummary balance)
    {
        writer.WriteStartArray("per_layer");
        for (var layer = 0; layer < balance.Layers.Count; layer++)
        {
            var b = balance.Layers[layer];
            writer.WriteStartObject();
            writer.WriteNumber("layer", layer);
            writer.WriteNumber("load", b.Load);
            writer.WriteNumber("mean_load", b.MeanLoad);
            writer.WriteNumber("max_load", b.MaxLoad);
            writer.WriteNumber("min_load", b.MinLoad);
            writer.WriteNumber("balancedness", b.Balancedness);
            writer.WriteNumber("max_mean_ratio", b.MaxMeanRatio);
            writer.WriteNumber("coefficient_of_variation", b.CoefficientOfVariation);
            writer.WriteNumber("hottest_expert", b.HottestExpert);
            writer.WriteNumber("coldest_expert", b.ColdestExpert);
            writer.WriteNumber("dead_experts", b.DeadExperts);
            writer.WriteNumber("gini_coefficient", b.GiniCoefficient);
            writer.WriteNumber("top10_percent_share", b.Top10PercentShare);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    /// <summary>
    /// <c>layer_counts</c>: each layer's counts since the start, named as the model's sums (<c>slots_dropped</c> with a
    /// capacity): which layers the sums' invalid ids and drops come from. An array of its own, not fields of
    /// <c>per_layer</c>: those are a span's balance, the same fields as a model's summary in C and Python.
    /// </summary>
    private static void WriteLayerCounts(Utf8JsonWriter writer, ModelCounts counts)
    {
        writer.WriteStartArray("layer_counts");
        for (var l = 0; l < counts.Layers.Count; l++)
        {
            var layer = counts.Layers[l];
            writer.WriteStartObject();
            writer.WriteNumber("layer", l);
            writer.WriteNumber("tokens", layer.Tokens);
            writer.WriteNumber("routed_slots", layer.RoutedSlots);
            writer.WriteNumber("invalid_expert_ids", layer.InvalidExpertIds);
            if (counts.Capacity is not null)
            {
                writer.WriteNumber("slots_dropped", layer.SlotsDropped);
            }

            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    /// <summary>A count summed over layers, which may pass what <c>WriteNumber</c> takes (2^64 − 1), written exactly.</summary>
    private static void WriteCount(Utf8JsonWriter writer, string name, UInt128 count)
    {
        writer.WritePropertyName(name);
        writer.WriteRawValue(count.ToString(CultureInfo.InvariantCulture));
    }

    private static void WriteOrNull(Utf8JsonWriter writer, string name, double? value)
    {
        if (value is { } number)
        {
            writer.WriteNumber(name, number);
        }
        else
        {
            writer.WriteNull(name);
        }
    }

    /// <summary>Layer indices by balancedness, lowest first; ties in layer order.</summary>
    internal static IEnumerable<int> WorstFirst(BalanceSummary balance) =>
        Enumerable.Range(0, balance.Layers.Count).OrderBy(layer => balance.Layers[layer].Balancedness);

    private static void Line(TextWriter output, string label, string value, string note = "") =>
        output.WriteLine($"  {label,-LabelWidth} {value,ValueWidth}{(note.Length > 0 ? "   " + note : "")}".TrimEnd());

    private static string Figure(double value) => value.ToString("0.000", CultureInfo.InvariantCulture);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
