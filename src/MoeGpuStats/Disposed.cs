namespace MoeGpuStats;

/// <summary>
/// Use after dispose refused on one line that names the object: <c>"This ModelRoutingStats was disposed."</c>.
/// </summary>
/// <remarks>
/// .NET's <see cref="ObjectDisposedException"/> given an object name continues its message on a second line
/// ("Object name: 'MoeGpuStats.RoutingStats'."), as <see cref="ObjectDisposedException.ThrowIf(bool, object)"/>
/// words it; these errors name the object in the message instead and leave
/// <see cref="ObjectDisposedException.ObjectName"/> empty, as <see cref="OutOfRange"/> does for values.
/// </remarks>
internal static class Disposed
{
    /// <summary>The error whose whole message is <paramref name="message"/>.</summary>
    /// <param name="message">One line naming what was disposed and what to do, ending in a full stop.</param>
    public static ObjectDisposedException Error(string message) => new(objectName: null, message);

    /// <summary>
    /// The refusal of an argument that cannot be used, naming it and why: "<paramref name="name"/> cannot be used:
    /// This RoutingStats was disposed." (a constructor would otherwise build on statistics that answer nothing).
    /// </summary>
    public static ArgumentException ArgumentError(string name, ObjectDisposedException gone) => new($"{name} cannot be used: {gone.Message}", name, gone);

    /// <summary>The refusal <paramref name="throwIfGone"/> throws, or null where it throws none.</summary>
    public static ObjectDisposedException? Of(Action throwIfGone)
    {
        try
        {
            throwIfGone();
            return null;
        }
        catch (ObjectDisposedException gone)
        {
            return gone;
        }
    }

    /// <summary>Throws where <paramref name="disposed"/>: "This <paramref name="type"/> was disposed."</summary>
    /// <exception cref="ObjectDisposedException"><paramref name="disposed"/> is true.</exception>
    public static void ThrowIf(bool disposed, string type)
    {
        if (disposed)
        {
            throw Error($"This {type} was disposed.");
        }
    }
}
