using static System.FormattableString;

namespace MoeGpuStats.Engines;

/// <summary>The parts given to a merge, read once and checked before any is exported.</summary>
internal static class MergeParts
{
    /// <summary>The parts as an array: at least one, none null, none disposed, none given twice.</summary>
    /// <param name="parts">The parts given.</param>
    /// <param name="name">The argument's name, for the messages.</param>
    /// <param name="gone">Why a part cannot be used (disposed), or null where it can.</param>
    /// <param name="state">What holds a part's counts, where two parts can share it (two handles of one model's layer);
    /// the part itself where null.</param>
    /// <exception cref="ArgumentNullException"><paramref name="parts"/> is null.</exception>
    /// <exception cref="ArgumentException">No parts, a null part, or one state given twice (named by their indices).</exception>
    /// <exception cref="ObjectDisposedException">A part was disposed (named by its index, among hundreds of ranks').</exception>
    public static T[] Collect<T>(IEnumerable<T> parts, string name, Func<T, ObjectDisposedException?> gone, Func<T, object>? state = null)
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

        var first = new Dictionary<object, int>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < list.Length; i++)
        {
            if (gone(list[i]) is { } disposed)
            {
                throw Disposed.Error(Invariant($"{name}[{i}] cannot be merged: {disposed.Message}"));
            }

            var key = state?.Invoke(list[i]) ?? list[i];
            if (!first.TryAdd(key, i))
            {
                var again = ReferenceEquals(list[first[key]], list[i]) ? "again" : "again, through another handle";
                throw new ArgumentException(Invariant($"{name}[{i}] is {name}[{first[key]}] {again}; one object merged twice would count its steps twice: give each rank's statistics once."), name);
            }
        }

        return list;
    }
}
