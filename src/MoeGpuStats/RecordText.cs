using System.Globalization;
using System.Text;

namespace MoeGpuStats;

/// <summary>
/// A public record's text as the compiler writes it (<c>LayerBalance { Load = 1024, Balancedness = 0.5, … }</c>),
/// its numbers written invariantly, as the library's messages and JSON write them.
/// </summary>
/// <remarks>
/// The compiler's <c>PrintMembers</c> appends each member in the current culture (<c>0,5</c> in sv-SE, <c>−1</c>
/// with U+2212), so a log line of a summary read differently from its JSON. It runs here under the invariant
/// culture, which keeps the compiler's member list: a member added to a record is printed without a change here.
/// </remarks>
internal static class RecordText
{
    /// <summary>The text of a record named <paramref name="name"/> whose members <paramref name="printMembers"/> appends.</summary>
    public static string Of(string name, Func<StringBuilder, bool> printMembers)
    {
        var culture = CultureInfo.CurrentCulture;
        CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
        try
        {
            var text = new StringBuilder(name).Append(" { ");
            if (printMembers(text))
            {
                text.Append(' ');
            }

            return text.Append('}').ToString();
        }
        finally
        {
            CultureInfo.CurrentCulture = culture;
        }
    }
}
