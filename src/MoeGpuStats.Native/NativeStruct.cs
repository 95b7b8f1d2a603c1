using System.Reflection;
using System.Runtime.InteropServices;

namespace MoeGpuStats.Native;

/// <summary>
/// Writes a C struct through a caller's pointer with its padding bytes zero. A struct copy carries whatever
/// its source's stack slot held in the padding, so two results of the same state could differ under
/// <c>memcmp</c>, a caller's cheapest "nothing changed" test.
/// </summary>
internal static unsafe class NativeStruct
{
    public static void Write<T>(T* destination, in T value)
        where T : unmanaged
    {
        *destination = value;
        foreach (var (start, length) in Padding<T>.Gaps)
        {
            new Span<byte>((byte*)destination + start, length).Clear();
        }
    }

    /// <summary>The byte ranges of <typeparamref name="T"/> that no field covers (between fields and at the end).</summary>
    internal static (int Start, int Length)[] Gaps<T>()
        where T : unmanaged => Padding<T>.Gaps;

    private static class Padding<T>
        where T : unmanaged
    {
        public static readonly (int Start, int Length)[] Gaps = Find();

        private static (int Start, int Length)[] Find()
        {
            var fields = typeof(T).GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)
                .Select(field => (Start: (int)Marshal.OffsetOf<T>(field.Name), Size: field.FieldType.IsPointer ? IntPtr.Size : Marshal.SizeOf(field.FieldType)))
                .OrderBy(field => field.Start);
            var gaps = new List<(int Start, int Length)>();
            var end = 0;
            foreach (var (start, size) in fields)
            {
                if (start > end)
                {
                    gaps.Add((end, start - end));
                }

                end = Math.Max(end, start + size);
            }

            if (sizeof(T) > end)
            {
                gaps.Add((end, sizeof(T) - end));
            }

            return [.. gaps];
        }
    }
}
