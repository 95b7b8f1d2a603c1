namespace MoeGpuStats.Native;

/// <summary>
/// The C API's argument checks, before anything reaches the statistics: a refused call leaves them as
/// they were, and its message names the C argument, its value and what is allowed, on one line.
/// </summary>
internal static class NativeChecks
{
    /// <summary>The most ids one record reads: the engines index a batch with 32-bit integers.</summary>
    public const long MaxIdsPerRecord = int.MaxValue;

    public static readonly string[] Accelerators = ["auto", "cuda", "opencl", "cpu", "managed"];

    public static void Create(string accelerator, int experts, int expertCapacity)
    {
        if (Array.IndexOf(Accelerators, accelerator) < 0)
        {
            throw new NativeArgumentException($"accelerator = \"{accelerator}\": must be one of auto (or NULL), cuda, opencl, cpu, managed.");
        }

        // Every accelerator but "managed" keeps its per-expert state on a device engine of fixed size;
        // the managed engine keeps it in .NET arrays.
        var most = accelerator == "managed" ? Array.MaxLength : RoutingStatsOptions.MaxDeviceExperts;
        if (experts < 1 || experts > most)
        {
            var why = accelerator == "managed" ? " (the longest .NET array)" : $" (the device engine's limit; managed takes up to {Array.MaxLength})";
            throw new NativeArgumentException($"experts = {experts}: must lie in [1, {most}] on {accelerator}{why}.");
        }

        if (expertCapacity < 0)
        {
            throw new NativeArgumentException($"expert_capacity = {expertCapacity}: must be 0 (the default of {CapacityStats.DefaultSlotsPerExpert} slots per expert) or a slot count in [1, {int.MaxValue}].");
        }
    }

    public static void Record(string kind, IntPtr ids, long length, int tokens, int topK, float loadBalanceLoss, float routerZLoss, IntPtr stream)
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

        // On OpenCL ids is a cl_mem handle, not an address; elsewhere a misaligned int32 read faults on the GPU.
        if (kind != "opencl" && ids % sizeof(int) != 0)
        {
            throw new NativeArgumentException($"ids = 0x{ids:x}: must be aligned to {sizeof(int)} bytes (int32 ids).");
        }

        Finite("load_balance_loss", loadBalanceLoss);
        Finite("router_z_loss", routerZLoss);
        if (stream != IntPtr.Zero && kind != "cuda")
        {
            throw new NativeArgumentException($"stream = 0x{stream:x}: a stream orders records only on cuda; this handle runs on {kind}, pass NULL.");
        }
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
    /// A message from below the C API as one line without .NET's decorations: the <c>(Parameter 'x')</c>
    /// suffix names a C# parameter the C caller never sees, and out-of-range messages continue on a second line.
    /// </summary>
    public static string OneLine(Exception exception)
    {
        var message = exception.Message;
        if (exception is ArgumentException { ParamName: { } name })
        {
            message = message.Replace($" (Parameter '{name}')", string.Empty, StringComparison.Ordinal);
        }

        return string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    private static void Finite(string name, float loss)
    {
        if (!float.IsFinite(loss))
        {
            throw new NativeArgumentException($"{name} = {loss}: must be finite.");
        }
    }
}

/// <summary>A refused C argument; the message is the C caller's, used verbatim.</summary>
internal sealed class NativeArgumentException(FormattableString message) : Exception(FormattableString.Invariant(message));
