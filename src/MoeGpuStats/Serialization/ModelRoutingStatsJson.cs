using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using MoeGpuStats.Engines;
using static System.FormattableString;

namespace MoeGpuStats.Serialization;

/// <summary>
/// Reads and writes <see cref="ModelRoutingStats"/> as JSON: the model's own fields (<c>experts</c>,
/// <c>window</c>, <c>expert_capacity</c>, <c>utilization_decay</c>, <c>skip_empty_steps</c> (written when true),
/// <c>steps</c>, <c>window_steps</c>, <c>merged_parts</c> (written above 1),
/// <c>window_load</c> as <c>[layers][experts]</c>) and a <c>layers</c> array of seed-shaped
/// <see cref="RoutingStats"/> objects. The window ring (up to 2^31 counts) is written only in a checkpoint
/// (<see cref="WindowRingJson"/>); a model read back without it answers every read but cannot record on.
/// </summary>
internal sealed class ModelRoutingStatsJsonConverter : JsonConverter<ModelRoutingStats>
{
    public override ModelRoutingStats Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        JsonTokenCount.CheckSnapshotValue(reader);
        using var document = JsonDocument.ParseValue(ref reader);
        return FromElement(document.RootElement);
    }

    public override void Write(Utf8JsonWriter writer, ModelRoutingStats value, JsonSerializerOptions options) => Write(writer, value, withRing: false);

    /// <summary>Writes <paramref name="value"/> from one read of it, with its window ring where <paramref name="withRing"/> (a checkpoint).</summary>
    public static void Write(Utf8JsonWriter writer, ModelRoutingStats value, bool withRing)
    {
        var state = value.ExportState(withRing);
        var model = value.Options;
        writer.WriteStartObject();
        writer.WriteNumber("experts", model.Experts);
        writer.WriteNumber("window", model.Window);
        if (model.ExpertCapacity is { } capacity)
        {
            writer.WriteNumber("expert_capacity", capacity);
        }

        if (model.UtilizationDecay is { } decay)
        {
            writer.WriteNumber("utilization_decay", decay);
        }

        if (model.SkipEmptySteps)
        {
            writer.WriteBoolean("skip_empty_steps", true);
        }

        if (value.MergedParts > 1)
        {
            writer.WriteNumber("merged_parts", value.MergedParts);
        }

        writer.WriteNumber("steps", state.Steps);
        writer.WriteNumber("window_steps", state.WindowSteps);
        writer.WriteStartArray("window_load");
        for (var l = 0; l < model.Layers; l++)
        {
            writer.WriteStartArray();
            foreach (var load in state.WindowLoad.AsSpan(l * model.Experts, model.Experts))
            {
                writer.WriteNumberValue(load);
            }

            writer.WriteEndArray();
        }

        writer.WriteEndArray();
        if (withRing)
        {
            WindowRingJson.Write(writer, state, model.Layers, model.Experts);
        }

        writer.WriteStartArray("layers");
        foreach (var layer in state.Layers)
        {
            using var stats = RoutingStats.FromState(model.LayerOptions, layer);
            RoutingStatsJson.Write(writer, stats);
        }

        writer.WriteEndArray();
        writer.WriteEndObject();
    }

    /// <summary>The model <paramref name="root"/> holds, on the managed engine.</summary>
    /// <exception cref="JsonException">A field is missing, of the wrong kind or out of range; the message names it.</exception>
    public static ModelRoutingStats FromElement(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new JsonException(Invariant($"Model routing statistics must be a JSON object, not {JsonShown.Kind(root.ValueKind)}."));
        }

        SnapshotFields.RefuseRepeated(root, "");
        RoutingStatsJson.RefuseLayerAndModel(root);

        var layers = Array(root, "layers");
        var loads = Array(root, "window_load");
        var options = new ModelRoutingStatsOptions
        {
            Layers = layers.GetArrayLength(),
            Experts = Int(root, "experts"),
            Window = Int(root, "window"),
            ExpertCapacity = Optional(root, "expert_capacity") is { } capacity ? WholeNumber(capacity, "expert_capacity") : null,
            UtilizationDecay = Optional(root, "utilization_decay") is { } decay ? Float(decay, "utilization_decay") : null,
            SkipEmptySteps = Optional(root, "skip_empty_steps") is { } skip && Boolean(skip, "skip_empty_steps"),
        };
        try
        {
            options.Validate();
        }
        catch (ArgumentException exception) when (exception.ParamName == nameof(ModelRoutingStatsOptions.Window) && options.WindowEntries > ModelRoutingStatsOptions.MaxWindowEntries)
        {
            // The ring's limit spans three settings: the file names them by its fields.
            throw new JsonException(Invariant($"The field 'window' is {options.Window}; {options.WindowRingRefusal("window × layers × experts")}"), exception);
        }
        catch (ArgumentException exception)
        {
            throw RoutingStatsJson.SettingError(exception, nameof(ModelRoutingStatsOptions.Layers), "The field 'layers' has {0} entries");
        }

        var steps = RoutingStatsJson.CountValue(Required(root, "steps"), "steps");
        var windowSteps = Int(root, "window_steps");
        if (windowSteps < 0 || windowSteps > options.Window || (ulong)windowSteps > steps)
        {
            throw new JsonException(Invariant($"window_steps is {windowSteps:N0}; it must be 1 to min(window = {options.Window:N0}, steps = {steps:N0}), or 0 while steps = 0."));
        }

        // A recording's window holds its newest min(window, steps) steps; a merge's, its longest part's (ModelRoutingMerge), which
        // is at least the steps an even split among the merged parts gives each. A merge of merges counts every recording in both.
        var mergedParts = RoutingStatsJson.ReadMergedParts(root);
        var fewest = (int)Math.Min((ulong)options.Window, (steps + (ulong)mergedParts - 1) / (ulong)mergedParts);
        if (windowSteps < fewest)
        {
            throw new JsonException(mergedParts == 1
                ? Invariant($"window_steps is {windowSteps:N0} with steps = {steps:N0} and window = {options.Window:N0}; the window holds the newest min(window, steps) = {fewest:N0} steps.")
                : Invariant($"window_steps is {windowSteps:N0} with steps = {steps:N0} from merged_parts = {mergedParts:N0} and window = {options.Window:N0}; a merge's window holds its longest part's, at least min(window, steps / merged_parts rounded up) = {fewest:N0} steps."));
        }

        if (loads.GetArrayLength() != options.Layers)
        {
            throw new JsonException(Invariant($"window_load has {Plural.Of(loads.GetArrayLength(), "row")}; it needs one per layer ({options.Layers:N0})."));
        }

        // Every row's length before the arrays sized layers × experts: a file of a few empty layers
        // must not cost the memory of 1,024 × 4,096 counts that it does not hold.
        var l = 0;
        foreach (var row in loads.EnumerateArray())
        {
            if (row.ValueKind != JsonValueKind.Array || row.GetArrayLength() != options.Experts)
            {
                throw new JsonException(Invariant($"window_load[{l}] must be an array of {options.Experts:N0} counts (one per expert)."));
            }

            l++;
        }

        var state = new ModelState
        {
            Steps = steps,
            WindowSteps = windowSteps,
            Layers = new RoutingState[options.Layers],
            WindowLoad = new ulong[options.Layers * options.Experts],
        };
        l = 0;
        foreach (var row in loads.EnumerateArray())
        {
            var e = 0;
            var rowName = Invariant($"window_load[{l}]");
            foreach (var load in row.EnumerateArray())
            {
                state.WindowLoad[(l * options.Experts) + e] = RoutingStatsJson.CountValue(load, rowName, e);
                e++;
            }

            l++;
        }

        l = 0;
        foreach (var layer in layers.EnumerateArray())
        {
            using var stats = Layer(layer, l, options);
            var layerState = stats.ExportState();
            if (layerState.TotalRoutings != state.Steps || layerState.ExpertUtilization.Length != (state.Steps == 0 ? 0 : options.Experts))
            {
                throw new JsonException(
                    Invariant($"layers[{l}] holds total_routings {layerState.TotalRoutings} and expert_utilization of {layerState.ExpertUtilization.Length}; the model holds steps {state.Steps} (each layer's total_routings) and {options.Experts:N0} experts per layer (none before the first step)."));
            }

            // A model's layers record ids alone, and every id that names an expert is one routed slot.
            var counted = RoutingStatsJson.Sum(layerState.ExpertTokenCounts);
            if (counted != layerState.RoutedSlots)
            {
                throw new JsonException(
                    Invariant($"layers[{l}]'s expert_token_counts sum to {counted} slots but its routed_slots is {layerState.RoutedSlots}; in a model every routed slot is one expert's."));
            }

            CheckRecordedByModel(layerState, l, options);
            CheckWindowWithinRun(state, layerState, l, options.Experts);
            CheckWindowWithinSteps(state, l, options.Experts, mergedParts);
            if (stats.RoutingLatencyStats.TotalMeasurements != 0)
            {
                throw new JsonException(
                    Invariant($"layers[{l}] holds routing_latency_stats of {Plural.Of((long)stats.RoutingLatencyStats.TotalMeasurements, "measurement")}; a model's layers measure no latency, and the model would read them and lose them."));
            }

            state.Layers[l++] = layerState;
        }

        WindowRingJson.Read(root, state, options, mergedParts);
        return new ModelRoutingStats(new ManagedModelEngine(options, state)) { MergedParts = mergedParts };
    }

    /// <summary>
    /// Layer <paramref name="l"/>'s statistics, its settings checked against the model's first (a state
    /// is checked against its own settings); a message of the one-layer reader names the layer, which that reader does not know.
    /// </summary>
    private static RoutingStats Layer(JsonElement layer, int l, ModelRoutingStatsOptions model)
    {
        try
        {
            // The model's merge is written once, beside its steps: a layer's own would be read and lost. The layer's
            // fields are bounded before it is looked for, as before every lookup.
            if (layer.ValueKind == JsonValueKind.Object)
            {
                SnapshotFields.RefuseUnbounded(layer, "");
                if (layer.TryGetProperty("merged_parts", out _))
                {
                    throw new JsonException(Invariant($"layers[{l}] holds merged_parts, which is the model's field (beside steps), not a layer's."));
                }
            }

            return RoutingStatsJson.FromElement(layer, settings => CheckLayerOptions(settings, model, l));
        }
        catch (JsonException exception) when (!exception.Message.StartsWith(Invariant($"layers[{l}]"), StringComparison.Ordinal))
        {
            throw new JsonException(Invariant($"layers[{l}]: {exception.Message}"), exception);
        }
    }

    /// <summary>
    /// Refuses a layer whose settings are not the model's: the writer writes the model's into every
    /// layer, and the model's are the ones a model read back uses.
    /// </summary>
    private static void CheckLayerOptions(RoutingStatsOptions layer, ModelRoutingStatsOptions model, int l)
    {
        if (layer.Experts != model.Experts)
        {
            throw new JsonException(Invariant($"layers[{l}]'s experts is {Shown(layer.Experts)} but the model's experts is {model.Experts}; every layer has the model's."));
        }

        if (layer.ExpertCapacity != model.ExpertCapacity)
        {
            throw new JsonException(
                Invariant($"layers[{l}]'s capacity_stats.slots_per_expert is {Shown(layer.ExpertCapacity)} but the model's expert_capacity is {Shown(model.ExpertCapacity)}; every layer has the model's."));
        }

        if (layer.UtilizationDecay != model.UtilizationDecay)
        {
            throw new JsonException(
                Invariant($"layers[{l}]'s utilization_decay is {Shown(layer.UtilizationDecay)} but the model's utilization_decay is {Shown(model.UtilizationDecay)}; every layer has the model's."));
        }
    }

    /// <summary>A setting as the file has it: missing or null is "none".</summary>
    private static string Shown<T>(T? value)
        where T : struct, IFormattable =>
        value is { } given ? given.ToString(null, CultureInfo.InvariantCulture) : "none";

    /// <summary>
    /// Refuses a layer that no model step leaves behind. A step records ids alone, at most 2^31 − 1 of them
    /// (tokens × k), and a token that is not padding has at least one id other than −1. It records them against every
    /// expert's capacity: no token is dropped (a capacity drops slots), no slot where no capacity is set, each step adds
    /// experts × slots per expert to the capacity (up to 2^63 − 1), and every counted slot was used or dropped.
    /// A merge adds every one of these, so a merged file holds them too.
    /// </summary>
    internal static void CheckRecordedByModel(RoutingState layer, int l, ModelRoutingStatsOptions options)
    {
        if (layer.TokensDropped != 0)
        {
            throw new JsonException(Invariant($"layers[{l}]'s tokens_dropped is {layer.TokensDropped}; a model's step records ids, where a capacity drops slots (slots_dropped), never tokens."));
        }

        if (options.ExpertCapacity is null && layer.SlotsDropped != 0)
        {
            throw new JsonException(Invariant($"layers[{l}]'s slots_dropped is {layer.SlotsDropped} without an expert_capacity; only a capacity drops a model's slots."));
        }

        // Each id is a routed slot, an invalid id or padding (−1), and a token that is not padding has at least one id
        // that is not (the layer's reader bounds the ids by 2^31 − 1 a step).
        var ids = (UInt128)layer.RoutedSlots + layer.InvalidExpertIds;
        if (layer.TotalTokens > ids)
        {
            throw new JsonException(Invariant($"layers[{l}]'s total_tokens is {layer.TotalTokens:N0} but its routed_slots and invalid_expert_ids are {ids:N0}; a token that is not padding has at least one id other than −1."));
        }

        var slots = options.ExpertCapacity ?? CapacityStats.DefaultSlotsPerExpert;
        var capacity = UInt128.Min((UInt128)layer.TotalRoutings * (ulong)options.Experts * (ulong)slots, RoutingStatsJson.MaxCount);
        if (layer.TotalCapacity != capacity)
        {
            var given = options.ExpertCapacity is null ? " (the default: expert_capacity is none)" : "";
            throw new JsonException(Invariant($"layers[{l}]'s capacity_stats.total_capacity is {layer.TotalCapacity:N0}; each of its {layer.TotalRoutings:N0} steps adds {options.Experts:N0} experts × {slots:N0} slots per expert{given}, stopping at {RoutingStatsJson.MaxCount:N0}, so it is {capacity:N0}."));
        }

        // The slots used stop at MaxCount, where the counts go on.
        var counted = RoutingStatsJson.Sum(layer.ExpertTokenCounts);
        if (counted < layer.SlotsDropped || layer.TotalUsed != UInt128.Min(counted - layer.SlotsDropped, RoutingStatsJson.MaxCount))
        {
            throw new JsonException(Invariant($"layers[{l}]'s capacity_stats.total_used is {layer.TotalUsed:N0} and slots_dropped {layer.SlotsDropped:N0}, but its expert_token_counts sum to {counted:N0}; each slot a step counts is used or dropped, never both, and the slots used stop at {RoutingStatsJson.MaxCount:N0}."));
        }
    }

    /// <summary>
    /// Refuses a window load that the layer's counts since the start cannot hold: the window is part
    /// of the run, and all of it once the window holds every step.
    /// </summary>
    private static void CheckWindowWithinRun(ModelState state, RoutingState layer, int l, int experts)
    {
        var wholeRun = (ulong)state.WindowSteps == state.Steps;
        for (var e = 0; e < experts; e++)
        {
            var load = state.WindowLoad[(l * experts) + e];
            var sinceStart = layer.ExpertTokenCounts.Length == 0 ? 0 : layer.ExpertTokenCounts[e];
            if (load > sinceStart || (wholeRun && load != sinceStart))
            {
                throw new JsonException(
                    Invariant($"window_load[{l}][{e}] is {load}, layers[{l}] counts {sinceStart} for expert {e} since the start; the window's load is part of the run's{(wholeRun ? ", and all of it while window_steps = steps" : "")}."));
            }
        }
    }

    /// <summary>
    /// Refuses a window load that its steps cannot hold: a step records at most 2^31 − 1 ids a layer (tokens × k),
    /// and a merge's window row sums one row of each part, as the counts since the start are bounded by the steps.
    /// </summary>
    private static void CheckWindowWithinSteps(ModelState state, int l, int experts, int mergedParts)
    {
        var load = RoutingStatsJson.Sum(state.WindowLoad.AsSpan(l * experts, experts));
        var most = (UInt128)(ulong)state.WindowSteps * (ulong)mergedParts * int.MaxValue;
        if (load > most)
        {
            var parts = mergedParts == 1 ? "" : Invariant($" and merged_parts = {mergedParts:N0}");
            throw new JsonException(
                Invariant($"window_load[{l}] sums to {load:N0} ids over window_steps = {state.WindowSteps:N0}{parts}; a step records at most {int.MaxValue:N0} ids a layer (tokens × k), so at most {most:N0}."));
        }
    }

    private static JsonElement Required(JsonElement parent, string name) =>
        parent.TryGetProperty(name, out var element) ? element : throw new JsonException(Invariant($"The field '{name}' is missing."));

    private static JsonElement Array(JsonElement parent, string name)
    {
        var element = Required(parent, name);
        return element.ValueKind == JsonValueKind.Array ? element : throw new JsonException(Invariant($"The field '{name}' must be an array, not {JsonShown.Kind(element.ValueKind)}."));
    }

    /// <summary>The field, or null where it is missing or null (the setting's default), as the one-layer reader takes them.</summary>
    private static JsonElement? Optional(JsonElement parent, string name) =>
        parent.TryGetProperty(name, out var element) && element.ValueKind != JsonValueKind.Null ? element : null;

    private static int Int(JsonElement parent, string name) => WholeNumber(Required(parent, name), name);

    private static int WholeNumber(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Number && element.TryGetInt32(out var value) ? value
        : throw new JsonException(Invariant($"The field '{name}' is {JsonShown.Value(element)}; it must be a 32-bit whole number (at most {int.MaxValue:N0})."));

    private static bool Boolean(JsonElement element, string name) =>
        element.ValueKind is JsonValueKind.True or JsonValueKind.False ? element.GetBoolean() : throw new JsonException(Invariant($"The field '{name}' must be true or false."));

    private static float Float(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Number && element.TryGetSingle(out var value) && float.IsFinite(value)
            ? value
            : throw new JsonException(Invariant($"The field '{name}' must be a finite number."));
}
