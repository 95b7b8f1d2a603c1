using System.Text;

namespace MoeGpuStats.Tests.Support;

/// <summary>.npy files written as NumPy writes them, for the tests of the readers and of the commands that read them.</summary>
internal static class NpyFile
{
    /// <summary>Writes a version-1 .npy file as np.save does (header padded to 64 bytes).</summary>
    internal static string Write(string path, string descr, string shape, byte[] data, bool fortran = false)
    {
        using var file = File.Create(path);
        WriteHeader(file, descr, shape, fortran);
        file.Write(data);
        return path;
    }

    /// <summary>A version-1 .npy array's bytes, as np.save writes them: an archive's member.</summary>
    internal static byte[] Bytes(string descr, string shape, byte[] data)
    {
        using var bytes = new MemoryStream();
        WriteHeader(bytes, descr, shape);
        bytes.Write(data);
        return bytes.ToArray();
    }

    /// <summary>Writes the preamble and header of a version-1 .npy array to <paramref name="stream"/>, for data written after it in pieces.</summary>
    internal static void WriteHeader(Stream stream, string descr, string shape, bool fortran = false)
    {
        var header = $"{{'descr': '{descr}', 'fortran_order': {(fortran ? "True" : "False")}, 'shape': ({shape}), }}";
        header += new string(' ', (64 - (10 + header.Length + 1) % 64) % 64) + "\n";
        stream.Write([0x93, .. "NUMPY"u8, 1, 0]);
        stream.Write(BitConverter.GetBytes((ushort)header.Length));
        stream.Write(Encoding.Latin1.GetBytes(header));
    }

    /// <summary>Writes <paramref name="ids"/> as int32 of shape <paramref name="shape"/> to <paramref name="name"/> in <paramref name="folder"/>; returns its path.</summary>
    internal static string WriteInt32(this DirectoryInfo folder, string name, string shape, int[] ids) =>
        Write(Path.Combine(folder.FullName, name), "<i4", shape, [.. ids.SelectMany(BitConverter.GetBytes)]);
}
