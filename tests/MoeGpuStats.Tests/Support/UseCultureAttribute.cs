using System.Globalization;
using System.Reflection;
using Xunit.v3;

namespace MoeGpuStats.Tests.Support;

/// <summary>
/// Runs a test under <see cref="Culture"/> (both the culture and the UI culture), then restores the thread's.
/// The suite runs in the machine's culture, the invariant one here and in CI; a test of a message that holds
/// numbers runs under "sv-SE", which writes 1,024 as "1 024", 0.5 as "0,5" and -1 as "−1" (U+2212), so that a
/// message written in the caller's culture fails it.
/// </summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Method)]
public sealed class UseCultureAttribute(string culture) : BeforeAfterTestAttribute
{
    private CultureInfo? _culture, _uiCulture;

    /// <summary>The culture's name; "" for the invariant culture.</summary>
    public string Culture { get; } = culture;

    public override void Before(MethodInfo methodUnderTest, IXunitTest test)
    {
        (_culture, _uiCulture) = (CultureInfo.CurrentCulture, CultureInfo.CurrentUICulture);
        CultureInfo.CurrentCulture = CultureInfo.CurrentUICulture = CultureInfo.GetCultureInfo(Culture);
    }

    public override void After(MethodInfo methodUnderTest, IXunitTest test)
    {
        CultureInfo.CurrentCulture = _culture!;
        CultureInfo.CurrentUICulture = _uiCulture!;
    }
}
