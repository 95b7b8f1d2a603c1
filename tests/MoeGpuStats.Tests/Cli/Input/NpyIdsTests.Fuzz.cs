using System.Text;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary>
/// Mutations of valid .npy files (a fixed seed, a fixed number): the reader either refuses a
/// file with <see cref="InvalidDataException"/> or reads it, and never allocates more than the file holds.
/// </summary>
public sealed partial class NpyIdsTests
{
    /// <summary>Mutants tried, the same ones on every machine (a time budget tried fewer on a slow one).</summary>
    private const int Mutants = 1_000;

    private static readonly string[] ShapeWords =
    [
        "-1", "0", "1", "2", "3", "4L", "2l", "7", "65536", "2147483647", "2147483648", "4294967296", "9223372036854775807",
        "99999999999999999999", "a", "", " ", ",", "(", ")", "1e3", "0x10", "+2", "--1", "None", "True", "'2'",
    ];

    [Fact]
    public void MutatedFilesAreReadOrRefusedWithinWhatTheyHold()
    {
        var random = new Random(18);
        var seeds = new[]
        {
            File.ReadAllBytes(NpyFile.Write(Path.Combine(_folder.FullName, "s1.npy"), "<i4", "3, 4, 2", [.. Enumerable.Range(-1, 24).SelectMany(BitConverter.GetBytes)])),
            File.ReadAllBytes(NpyFile.Write(Path.Combine(_folder.FullName, "s2.npy"), "<i8", "5, 2", [.. new long[] { 0, 1, -1, 3, long.MaxValue, 5, 6, 7, 8, 9 }.SelectMany(BitConverter.GetBytes)])),
            VersionTwo("{'descr': '<i4', 'fortran_order': False, 'shape': (2L, 2L, 1L), }\n", [.. new[] { 1, 2, 3, 4 }.SelectMany(BitConverter.GetBytes)]),
        };
        var path = Path.Combine(_folder.FullName, "mutant.npy");
        int tries = 0, opened = 0;
        while (tries < Mutants)
        {
            var bytes = Mutate(seeds[random.Next(seeds.Length)], random);
            File.WriteAllBytes(path, bytes);
            tries++;
            // The first reading of a kind of file may initialize the runtime's caches on this thread
            // (exception resources, a regex): read it once, then measure a second reading.
            opened += Exercise(path, bytes) ? 1 : 0;
            var before = GC.GetAllocatedBytesForCurrentThread();
            Exercise(path, bytes);
            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated <= (3L * bytes.Length) + (256 << 10), $"{Describe(bytes)}: {allocated:N0} bytes allocated for a file of {bytes.Length:N0}");
        }

        Assert.True(opened > 0 && opened < tries, $"{opened} of {tries} mutants opened: the mutations should keep some files valid and break others");
    }

    /// <summary>Opens and reads <paramref name="path"/> whole, or sees it refused in one line; whether it opened.</summary>
    private static bool Exercise(string path, byte[] bytes)
    {
        try
        {
            using var npy = NpyIds.Open(path, layout: null);
            var itemSize = npy.DType == "int32" ? 4 : 8;
            Assert.True((long)npy.Steps * npy.IdsPerStep * itemSize <= bytes.Length, $"{Describe(bytes)} opened with more ids than it holds");
            npy.MaxId();
            var step = new int[npy.IdsPerStep];
            for (var s = 0; s < npy.Steps; s++)
            {
                npy.ReadStep(s, step);
            }

            return true;
        }
        catch (Exception exception) when (exception is InvalidDataException or IdLayoutException)
        {
            Assert.DoesNotContain('\n', exception.Message);
            return false;
        }
    }

    private static byte[] VersionTwo(string header, byte[] data) =>
        [0x93, .. "NUMPY"u8, 2, 0, .. BitConverter.GetBytes(header.Length), .. Encoding.Latin1.GetBytes(header), .. data];

    private static byte[] Mutate(byte[] seed, Random random)
    {
        var bytes = seed.ToList();
        var headerEnd = Math.Min(bytes.Count, bytes.IndexOf((byte)'\n') + 1);
        switch (random.Next(6))
        {
            case 0:
                // Flip a few bytes, mostly in the preamble and header.
                for (var i = random.Next(1, 4); i > 0; i--)
                {
                    bytes[random.Next(random.Next(2) == 0 ? Math.Max(1, headerEnd) : bytes.Count)] = (byte)random.Next(256);
                }

                break;
            case 1:
                var kept = random.Next(bytes.Count);
                bytes.RemoveRange(kept, bytes.Count - kept);
                break;
            case 2:
                // A length field that promises anything.
                var field = bytes[6] == 1 ? 2 : 4;
                for (var i = 0; i < field; i++)
                {
                    bytes[8 + i] = (byte)random.Next(256);
                }

                break;
            case 3:
                bytes[6] = (byte)random.Next(5);
                break;
            default:
                var text = Encoding.Latin1.GetString([.. bytes]);
                var open = text.IndexOf("'shape': (", StringComparison.Ordinal) + "'shape': (".Length;
                var close = text.IndexOf(')', open);
                var words = Enumerable.Range(0, random.Next(0, 5)).Select(_ => ShapeWords[random.Next(ShapeWords.Length)]);
                var shape = string.Join(random.Next(3) == 0 ? "," : ", ", words);
                var mutated = Encoding.Latin1.GetBytes(text[..open] + shape + text[close..]);
                bytes = [.. mutated];
                if (random.Next(2) == 0 && bytes[6] == 1)
                {
                    // Keep the header length true to the new shape, so that the shape is what gets read.
                    var length = BitConverter.GetBytes((ushort)(BitConverter.ToUInt16([.. bytes], 8) + mutated.Length - seed.Length));
                    (bytes[8], bytes[9]) = (length[0], length[1]);
                }

                break;
        }

        return [.. bytes];
    }

    private static string Describe(byte[] bytes) => $"'{Encoding.Latin1.GetString(bytes, 0, Math.Min(bytes.Length, 140)).Replace('\n', '|')}'";
}
