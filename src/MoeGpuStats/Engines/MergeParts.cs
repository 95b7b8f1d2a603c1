namespace MoeGpuStats.Engines;

/// <summary>The parts given to a merge, read once and checked before any is exported.</summary>
internal static class MergeParts
{
    /// <summary>The parts as an array: at least one, none null.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="parts"/> is null.</exception>
    /// <exception cref="ArgumentException">No parts, or a null part (named by its index).</exception>
    public static T[] Collect<T>(IEnumerable<T> parts, string name)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(parts, name);
        var list = parts.ToArray();
        if (list.Length == 0)
        {
            throw new ArgumentException($"{name} is empty; give at least one part to merge.", name);
        }

        var missing = Array.IndexOf(list, null);
        if (missing >= 0)
        {
            throw new ArgumentException($"{name}[{missing}] is null; every part must be statistics to merge.", name);
        }

        return list;
    }
}
