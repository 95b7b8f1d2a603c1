using System.Runtime.CompilerServices;
using ILGPU.Runtime;

namespace MoeGpuStats.Kernels;

/// <summary>
/// Serializes this library's kernel launches on one OpenCL accelerator; on CUDA and the CPU accelerator it holds
/// nothing. ILGPU keeps one loaded kernel per method and accelerator, so every statistics object on an accelerator
/// launches the same <c>cl_kernel</c>, and ILGPU's OpenCL launch sets that kernel's arguments
/// (<c>clSetKernelArg</c>) before it enqueues, which OpenCL does not allow from two threads on one kernel object at once
/// (the OpenCL 3.0 API specification, "Multiple Host Threads"). Unserialized, two objects recording from two threads swap
/// arguments (a step lands in the other object's state) or corrupt the driver's heap, as PoCL 5.0 showed.
/// </summary>
internal readonly struct LaunchGate
{
    private static readonly ConditionalWeakTable<Accelerator, Lock> Gates = new();

    private readonly Lock? _lock;

    /// <summary>The gate of <paramref name="accelerator"/>'s launches: one lock per OpenCL accelerator, none elsewhere.</summary>
    public LaunchGate(Accelerator accelerator) =>
        _lock = accelerator.AcceleratorType == AcceleratorType.OpenCL ? Gates.GetValue(accelerator, _ => new Lock()) : null;

    /// <summary>Holds the gate until the scope is disposed: around setting a launch's arguments and enqueuing it.</summary>
    public Scope Enter()
    {
        _lock?.Enter();
        return new Scope(_lock);
    }

    /// <summary>A held gate; disposing it releases the gate.</summary>
    public readonly ref struct Scope(Lock? held)
    {
        public void Dispose() => held?.Exit();
    }
}
