using System.Runtime.InteropServices;

namespace MoeGpuStats.Native;

/// <summary>
/// The C struct <c>moegs_model_arrays</c>: where a model's counters lie, field for field as
/// include/moegs.h declares (and documents) it. libmoegs refuses to start when its size differs from
/// the header's, and NativeApiTests (NativeApiTests.Model.cs) compares the layout with the header's field by field.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct NativeModelArrays
{
    public IntPtr TokenCounts;
    public IntPtr WindowLoad;
    public IntPtr Accelerator;
    public ulong Steps;
    public int WindowSteps;
    public int Layers;
    public int Experts;
    public int Synchronized;
}
