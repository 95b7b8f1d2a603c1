namespace MoeGpuStats.Kernels.Model;

/// <summary>
/// The step control of a model's state (<see cref="ModelStateViews.Control"/>): which batch buffer a
/// launch counts into, the ticket that finds a launch's last group, the window's ring position,
/// and what each batch buffer's step was. A launch reads all of it from the device, so the same
/// launch arguments record every step (a CUDA graph replays them).
/// </summary>
/// <remarks>
/// Only the last group of a launch to finish (the one whose ticket is the grid's size less one)
/// writes the control: every other group has read it by then, so every group of a launch sees the
/// same buffer and ring position.
/// </remarks>
internal static class ModelStateLayout
{
    /// <summary>The batch buffer this launch counts into (0 or 1); the other is folded.</summary>
    public const int CountingBuffer = 0;

    /// <summary>Groups of this launch that have finished.</summary>
    public const int Ticket = 1;

    /// <summary>The window ring position the next folded step writes.</summary>
    public const int WindowPosition = 2;

    /// <summary>Per batch buffer, <see cref="BufferFields"/> ints from here: recorded, tokens, top-k, copies.</summary>
    public const int Buffers = 3;

    /// <summary>Ints per batch buffer.</summary>
    public const int BufferFields = 4;

    /// <summary>Offset of a buffer's flag: 1 while it holds a counted step that is not folded yet.</summary>
    public const int Recorded = 0;

    /// <summary>Offset of a buffer's valid tokens (padded tokens included, as a single-layer record's).</summary>
    public const int Tokens = 1;

    /// <summary>Offset of a buffer's top-k.</summary>
    public const int TopK = 2;

    /// <summary>Offset of the histogram copies a buffer's step was counted into.</summary>
    public const int Copies = 3;

    /// <summary>The control's length.</summary>
    public const int ControlLength = Buffers + RoutingStateLayout.BatchBuffers * BufferFields;

    /// <summary>The index of <paramref name="field"/> of <paramref name="buffer"/>.</summary>
    public static int Field(int buffer, int field) => Buffers + buffer * BufferFields + field;
}
