using System.Globalization;
using System.Reflection;
using System.Text;

namespace MoeGpuStats;

/// <summary>
/// A public record's text in the compiler's form (<c>LayerBalance { Load = 1024, Balancedness = 0.5, … }</c>), its
/// numbers written invariantly, as the library's messages and JSON write them.
/// </summary>
/// <remarks>
/// The compiler's <c>PrintMembers</c> appends each member in the current culture (<c>0,5</c> in sv-SE, <c>−1</c>
/// with U+2212), so a log line of a summary read differently from its JSON. Running it under the invariant culture
/// would pin the calling thread's culture (a culture once set no longer follows
/// <see cref="CultureInfo.DefaultThreadCurrentCulture"/>), so the members are written here, as the compiler lists
/// them: public instance properties in declaration order (<c>RecordTextTests</c> checks the lists agree).
/// </remarks>
internal static class RecordText
{
    /// <summary>The text of <paramref name="record"/>.</summary>
    public static string Of<T>(T record)
        where T : notnull
    {
        var text = new StringBuilder(typeof(T).Name).Append(" { ");
        var members = Members<T>.Properties;
        object boxed = record;
        for (var i = 0; i < members.Length; i++)
        {
            var value = members[i].GetValue(boxed);
            text.Append(i == 0 ? "" : ", ").Append(members[i].Name).Append(" = ")
                .Append(value is IFormattable formattable ? formattable.ToString(null, CultureInfo.InvariantCulture) : value?.ToString());
        }

        return text.Append(members.Length == 0 ? "}" : " }").ToString();
    }

    private static class Members<T>
    {
        public static readonly PropertyInfo[] Properties = typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(property => property.GetIndexParameters().Length == 0 && property.GetMethod is { IsPublic: true })
            .ToArray();
    }
}
