using System.Text.Json;

namespace MoeGpuStats.Tests.Scripts;

/// <summary>
/// bench/torch/model_baseline.py, the PyTorch side of the GPU check's whole-model targets, run on the
/// CPU (<c>--device cpu</c>): the GPU run compares its checksums with the model check's, so its data
/// and its four ways of counting must give this library's counts before any GPU time is spent.
/// </summary>
public sealed class ModelBaselineScriptTests
{
    [Fact]
    public void EveryWayOfCountingGivesTheModelsCounts()
    {
        var script = Path.Combine(Checkout.RequireRoot("bench/torch/model_baseline.py is not here"), "bench", "torch", "model_baseline.py");
        var python = ExternalProgram.PythonWithTorch();
        Assert.SkipWhen(python is null, "no python3 with torch here (Debian: apt-get install python3-torch)");
        var json = Path.Combine(Path.GetTempPath(), $"model-baseline-{Guid.NewGuid():N}.json");
        ModelShape[] shapes = [new(3, 16, 2, 5), new(58, 256, 8, 64), new(32, 8, 2, 256), new(4, 4096, 8, 3)];

        try
        {
            var output = ExternalProgram.Run(
                python!, $"\"{script}\" --device cpu --reps 2 --shapes {string.Join(',', shapes)} --json \"{json}\"", out var exitCode);
            Assert.True(exitCode == 0, output);

            var rows = JsonDocument.Parse(File.ReadAllText(json)).RootElement.EnumerateArray().ToArray();
            Assert.Equal(shapes.Length, rows.Length);
            for (var i = 0; i < shapes.Length; i++)
            {
                Assert.True(rows[i].GetProperty("checksums_agree").GetBoolean(), $"{shapes[i]}: the four countings differ\n{output}");
                Assert.Equal(shapes[i].Checksum(), rows[i].GetProperty("checksum").GetUInt64());
            }
        }
        finally
        {
            File.Delete(json);
        }
    }

    /// <summary>The script's shape <c>LxExkxT</c>, its data and its checksum, counted by this library's managed engine.</summary>
    private readonly record struct ModelShape(int Layers, int Experts, int TopK, int Tokens)
    {
        public override string ToString() => $"{Layers}x{Experts}x{TopK}x{Tokens}";

        /// <summary>
        /// One step of the script's ids (id[i] = floor(u_i² × E), u_i = ((i × 2654435761) mod 2^32) / 2^32 over the
        /// step's flat index) recorded, then Σ count[l, e] × (l × E + e + 1) over the window's load.
        /// </summary>
        public ulong Checksum()
        {
            var ids = new int[Layers * Tokens * TopK];
            for (long i = 0; i < ids.Length; i++)
            {
                var u = (double)(uint)(i * 2654435761L) / 4294967296.0;
                ids[i] = (int)Math.Floor(u * u * Experts);
            }

            using var model = new ModelRoutingStats(new ModelRoutingStatsOptions { Layers = Layers, Experts = Experts, Window = 1 });
            model.RecordStep(ids, Tokens, TopK);
            var load = model.WindowLoad();
            var checksum = 0UL;
            for (var i = 0; i < load.Length; i++)
            {
                checksum += load[i] * (ulong)(i + 1);
            }

            return checksum;
        }
    }
}
