using System.Text;

namespace MoeGpuStats.Tests.Support;

/// <summary>.npy files written as NumPy writes them, for the tests of the readers and of the commands that read them.</summary>
internal static class NpyFile
{
    /// <summary>Writes a version-1 .npy file as np.save does (header padded to 64 bytes).</summary>
    internal static string Write(string path, string descr, string shape, byte[] data, bool fortran = false)
    {
        var header = $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': ({shape}), }}";
        header += new string(' ', (64 - (10 + header.Length + 1) % 64) % 64) + "\n";
        using var file = File.Create(path);
        file.Write([0x93, .. "NUMPY"u8, 1, 0]);
        file.Write(BitConverter.GetBytes((ushort)header.Length));
        file.Write(Encoding.Latin1.GetBytes(header));
        file.Write(data);
        return path;
    }

    /// <summary>Writes <paramref name="ids"/> as int32 of shape <paramref name="shape"/> to <paramref name="name"/> in <paramref name="folder"/>; returns its path.</summary>
    internal static string WriteInt32(this DirectoryInfo folder, string name, string shape, int[] ids) =>
        Write(Path.Combine(folder.FullName, name), "<i4", shape, [.. ids.SelectMany(BitConverter.GetBytes)]);
}
