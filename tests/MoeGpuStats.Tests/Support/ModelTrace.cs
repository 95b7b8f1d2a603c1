namespace MoeGpuStats.Tests.Support;

/// <summary>The ids of a model's steps for the CLI tests: top-2 of 8 experts, the shape their .npy files have.</summary>
internal static class ModelTrace
{
    private const int TopK = 2;
    private const int Experts = 8;

    /// <summary>Top-k ids without repeats per token, [steps, layers, tokens, k], skewed so layers differ; a few empty slots.</summary>
    internal static int[] Ids(int steps, int layers, int tokens, int seed)
    {
        var random = new Random(seed);
        var ids = new int[steps * layers * tokens * TopK];
        for (var row = 0; row < steps * layers * tokens; row++)
        {
            var layer = row / tokens % layers;
            var first = Math.Min(Experts - 1, (int)(random.NextDouble() * random.NextDouble() * (Experts - (layer % (Experts - 1)))));
            ids[row * TopK] = first;
            ids[(row * TopK) + 1] = random.Next(10) == 0 ? -1 : (first + 1 + random.Next(Experts - 1)) % Experts;
        }

        return ids;
    }
}
