namespace MoeGpuStats.Kernels.Model;

/// <summary>
/// The host-known scalars of a model's record launch, passed by value. They depend only on the
/// model and the step's shape, never on earlier steps, so one set of them records any number of steps.
/// </summary>
internal struct ModelStepArguments
{
    /// <summary>MoE layers.</summary>
    public int Layers;

    /// <summary>Experts per layer.</summary>
    public int Experts;

    /// <summary>Steps in the sliding window (the ring's length).</summary>
    public int Window;

    /// <summary>Token rows per layer; a device count of valid tokens may lower it.</summary>
    public int Tokens;

    /// <summary>Experts per token.</summary>
    public int TopK;

    /// <summary>Ids from one layer's first id to the next's (<see cref="ModelIdLayout"/>).</summary>
    public long LayerStride;

    /// <summary>Ids from one token's first id to the next's within a layer, at least <see cref="TopK"/> (<see cref="ModelIdLayout"/>).</summary>
    public long TokenStride;

    /// <summary>Counting groups per layer; 0 for a launch that only folds the pending step.</summary>
    public int GroupsPerLayer;

    /// <summary>Copies of a layer's batch histogram its counting groups flush into (<see cref="RecordArguments.Copies"/>).</summary>
    public int Copies;

    /// <summary>Slots per expert per step; 0 for none (<see cref="RecordArguments.ExpertCapacity"/>).</summary>
    public int ExpertCapacity;

    /// <summary>Slots per expert for the capacity statistics (<see cref="RecordArguments.SlotsPerExpert"/>).</summary>
    public int SlotsPerExpert;

    /// <summary>Decay of the decayed utilization; negative when it is off.</summary>
    public float UtilizationDecay;

    /// <summary>1 to leave out a step in which no layer holds a token (every valid row padding, or none valid); 0 to record it.</summary>
    public int SkipEmptySteps;
}
