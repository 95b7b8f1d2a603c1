using System.CommandLine;
using MoeGpuStats.Cli.Input;
using MoeGpuStats.Cli.Output;
using MoeGpuStats.Placement;

namespace MoeGpuStats.Cli.Commands;

/// <summary>
/// <c>plan LOAD</c>: an expert replication and placement by DeepSeek's EPLB, with its balancedness. The options are
/// <see cref="PlanOptions"/>'s; the output, <see cref="PlanText"/>'s or <see cref="PlanJson"/>'s.
/// </summary>
internal static partial class PlanCommand
{
    /// <summary>The library's bound on slots per layer (far above deployments); --json's padded log2phy has a bound of its own (<see cref="TooLargeForJson"/>).</summary>
    public const int MaxSlotsPerLayer = ExpertPlacement.MaxPhysicalExperts;

    public static Command Create(CliConsole console)
    {
        var options = new PlanOptions();
        var command = options.CreateCommand();
        command.SetAction(parse => Plan(console, options.Read(parse)));
        return command;
    }

    /// <summary>
    /// Reads the load (and the placement serving now, if given), makes the plan and prints it; a refusal is one line
    /// on standard error and its exit code.
    /// </summary>
    private static int Plan(CliConsole console, PlanRequest request)
    {
        if (ShapeProblem(request) is { } shapeProblem)
        {
            console.Error.WriteLine(shapeProblem);
            return ExitCodes.Usage;
        }

        var path = request.Load;
        if (!LoadMatrix.TryRead(console, path, request.LoadPerSlot ? "slot" : "expert", out var loads, out var loadSource))
        {
            return ExitCodes.BadInput;
        }

        if (LoadMatrix.IdsNote(path, loads, loadSource) is { } idsNote)
        {
            console.Error.WriteLine(idsNote);
        }

        DeployedPlacement? deployed = null;
        if (request.Current is not null && !DeployedPlacement.TryRead(console, request.Current, out deployed))
        {
            return ExitCodes.BadInput;
        }

        var deployedGpus = deployed?.Gpus ?? request.Gpus;
        double[]? measured = null;
        if (request.LoadPerSlot)
        {
            if (SumSlotsPerExpert(console, request, deployed!, deployedGpus, loads, out measured) is not { } expertLoads)
            {
                return ExitCodes.BadInput;
            }

            loads = expertLoads;
        }

        if (ExpertsProblem(request, loads) is { } expertsProblem)
        {
            console.Error.WriteLine(expertsProblem);
            return ExitCodes.Usage;
        }

        if (!TryBalancednessBefore(console, request, loads, deployed, deployedGpus, measured, out var before, out var beforeIs))
        {
            return ExitCodes.BadInput;
        }

        if (request.Json && TooLargeForJsonBeforePlanning(request, loads) is { } early)
        {
            console.Error.WriteLine(early);
            return ExitCodes.BadInput;
        }

        var plan = ExpertPlacement.Rebalance(loads, request.Replicas, request.Groups, request.Nodes, request.Gpus);
        var after = ExpertPlacement.Balancedness(loads, plan);
        if (request.Json)
        {
            if (TooLargeForJson(plan, plan.Layers) is { } tooLarge)
            {
                console.Error.WriteLine(tooLarge);
                return ExitCodes.BadInput;
            }

            PlanJson.Write(console.Out, plan, before, after);
        }
        else
        {
            PlanText.Write(console.Out, path.ToString(), loadSource, plan, before, beforeIs, after);
        }

        return ExitCodes.Ok;
    }

    /// <summary>Why the slots, GPUs and nodes do not fit together, or --load-per-slot lacks its placement; null when they fit.</summary>
    private static string? ShapeProblem(PlanRequest request)
    {
        var (r, n, p) = (request.Replicas, request.Nodes, request.Gpus);
        if (r % p != 0)
        {
            return $"--replicas {r}: {r:N0} slots do not divide among --gpus {p} GPUs; give a multiple of {p:N0}.";
        }

        if (p % n != 0)
        {
            return $"--nodes {n}: {n:N0} nodes do not divide --gpus {p}; give a divisor of {p:N0}.";
        }

        return request.LoadPerSlot && request.Current is null
            ? "--load-per-slot: the slots are those of the placement the load was recorded under; give it with --current."
            : null;
    }

    /// <summary>
    /// For --load-per-slot: <paramref name="slotLoads"/> summed per logical expert through the placement serving now,
    /// and as <paramref name="measured"/> each layer's balancedness under that placement as recorded. Null, with the
    /// line written, where the load and the placement do not fit.
    /// </summary>
    private static long[,]? SumSlotsPerExpert(CliConsole console, PlanRequest request, DeployedPlacement deployed, int deployedGpus, long[,] slotLoads, out double[]? measured)
    {
        measured = null;
        var (rows, slots) = (slotLoads.GetLength(0), slotLoads.GetLength(1));
        var against = $"--current {request.Current} (against {request.Load}: {Counted.Of(rows, "layer")} of {Counted.Of(slots, "slot")}, --load-per-slot)";
        long[,] expertLoads;
        try
        {
            expertLoads = ExpertPlacement.LogicalLoads(slotLoads, deployed.PhysicalToLogical);
        }
        catch (Exception exception) when (exception is ArgumentException or OverflowException)
        {
            console.Error.WriteLine($"{against}: {InFileTerms(exception)}");
            return null;
        }

        if (slots % deployedGpus != 0)
        {
            var whose = deployed.Gpus is null ? "--gpus" : "the file's gpus field";
            console.Error.WriteLine($"{against}: {Counted.Of(slots, "slot")} do not divide among {Counted.Of(deployedGpus, "GPU")} ({whose}); every GPU holds as many.");
            return null;
        }

        measured = ExpertPlacement.IdentityBalancedness(slotLoads, deployedGpus);
        return expertLoads;
    }

    /// <summary>Why the plan's slots or groups do not fit the load's experts; null when they fit.</summary>
    private static string? ExpertsProblem(PlanRequest request, long[,] loads)
    {
        // The load file's reader refused more layers than a model has and more experts than a plan has slots.
        var (r, g, p, path) = (request.Replicas, request.Groups, request.Gpus, request.Load);
        var experts = loads.GetLength(1);
        if (r < experts)
        {
            return $"--replicas {r}: {path} has {experts:N0} experts and each needs a slot; give at least {experts:N0} (a multiple of --gpus {p}).";
        }

        return experts % g != 0
            ? $"--groups {g}: {g:N0} groups do not divide the {experts:N0} experts of {path}; give a divisor of {experts:N0} (1 when the model has no groups)."
            : null;
    }

    /// <summary>
    /// Each layer's balancedness before the plan, and what it is of (null for the experts in order): as
    /// <paramref name="measured"/> from a load per slot, under the placement serving now, or of the experts in order.
    /// False, with the line written, where the placement does not fit the load.
    /// </summary>
    private static bool TryBalancednessBefore(CliConsole console, PlanRequest request, long[,] loads, DeployedPlacement? deployed, int deployedGpus, double[]? measured, out double[]? before, out string? beforeIs)
    {
        beforeIs = null;
        if (measured is not null)
        {
            before = measured;
            beforeIs = $"the current placement, {request.Current!.Name}, as recorded: the load of each GPU's own {Counted.Of(deployed!.PhysicalToLogical[0].Length / deployedGpus, "slot")}";
        }
        else if (deployed is not null)
        {
            try
            {
                before = ExpertPlacement.Balancedness(loads, deployed.PhysicalToLogical, deployedGpus);
            }
            catch (ArgumentException exception)
            {
                var (layers, experts) = (loads.GetLength(0), loads.GetLength(1));
                console.Error.WriteLine($"--current {request.Current} (against {request.Load}: {Counted.Of(layers, "layer")} of {Counted.Of(experts, "expert")}): {InFileTerms(exception)}");
                before = null;
                return false;
            }

            beforeIs = $"the current placement, {request.Current!.Name}: {Counted.Of(deployed.PhysicalToLogical[0].Length, "slot")} per layer on {Counted.Of(deployedGpus, "GPU")}";
        }
        else
        {
            before = ExpertPlacement.IdentityBalancedness(loads, request.Gpus);
        }

        return true;
    }

    /// <summary>An exception's message in the files' words: the library names its parameters, the files their fields.</summary>
    private static string InFileTerms(Exception exception) =>
        ErrorText.Of(exception).Replace("physicalToLogical", "physical_to_logical", StringComparison.Ordinal).Replace("slotLoads", "LOAD", StringComparison.Ordinal);
}
