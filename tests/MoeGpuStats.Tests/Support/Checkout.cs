namespace MoeGpuStats.Tests.Support;

/// <summary>The repository checkout above the test binaries; a packaged test run (the GPU machine) has none.</summary>
internal static class Checkout
{
    /// <summary>The checkout's root (the folder of MoeGpuStats.sln), or null in a packaged run.</summary>
    public static string? Root { get; } = FindRoot();

    /// <summary>The checkout's root, or the test skipped for <paramref name="reason"/> (what is missing without it).</summary>
    public static string RequireRoot(string reason)
    {
        Assert.SkipWhen(Root is null, $"no checkout above the test binaries: {reason}");
        return Root!;
    }

    private static string? FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "MoeGpuStats.sln")))
            {
                return dir.FullName;
            }
        }

        return null;
    }
}
