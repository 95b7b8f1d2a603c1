using static System.FormattableString;

namespace MoeGpuStats.Engines;

/// <summary>The parts given to a merge, read once and checked before any is exported.</summary>
internal static class MergeParts
{
    /// <summary>The parts as an array: at least one, none null, none given twice.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="parts"/> is null.</exception>
    /// <exception cref="ArgumentException">No parts, a null part, or one object given twice (named by their indices).</exception>
    public static T[] Collect<T>(IEnumerable<T> parts, string name)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(parts, name);
        var list = parts.ToArray();
        if (list.Length == 0)
        {
            throw new ArgumentException(Invariant($"{name} is empty; give at least one part to merge."), name);
        }

        var missing = Array.IndexOf(list, null);
        if (missing >= 0)
        {
            throw new ArgumentException(Invariant($"{name}[{missing}] is null; every part must be statistics to merge."), name);
        }

        var first = new Dictionary<T, int>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < list.Length; i++)
        {
            if (!first.TryAdd(list[i], i))
            {
                throw new ArgumentException(Invariant($"{name}[{i}] is {name}[{first[list[i]]}] again; one object merged twice would count its steps twice: give each rank's statistics once."), name);
            }
        }

        return list;
    }
}
