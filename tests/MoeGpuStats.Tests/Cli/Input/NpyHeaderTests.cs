using System.Text;
using MoeGpuStats.Cli.Input;

namespace MoeGpuStats.Tests.Cli.Input;

/// <summary><see cref="NpyHeader"/> read directly, as an archive member is: with the length its directory claims, not the bytes there are.</summary>
public sealed class NpyHeaderTests : IDisposable
{
    private const string Header = "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1), }\n";

    private readonly DirectoryInfo _folder = Directory.CreateTempSubdirectory("moegs-npy-header-");

    public void Dispose() => _folder.Delete(recursive: true);

    /// <summary>
    /// A member whose directory claims fewer bytes than the preamble is refused by that length; one whose data ends
    /// inside the header, although the length claimed holds it, by the header it cuts.
    /// </summary>
    [Fact]
    public void AMemberCutInsideItsPreambleOrHeaderIsRefusedByWhatItCuts()
    {
        byte[] member = [0x93, .. "NUMPY"u8, 1, 0, .. BitConverter.GetBytes((ushort)Header.Length), .. Encoding.Latin1.GetBytes(Header)];
        var whole = Path.Combine(_folder.FullName, "member.npy");
        File.WriteAllBytes(whole, member);
        var cut = Path.Combine(_folder.FullName, "member-cut.npy");
        File.WriteAllBytes(cut, member[..^1]);

        Assert.Equal("member: truncated: 9 bytes, fewer than the .npy preamble's 10.", Refusal(whole, claimed: 9));
        Assert.Equal("member: truncated header.", Refusal(cut, claimed: member.Length));
    }

    /// <summary>The refusal of the header of <paramref name="path"/> read as a member of <paramref name="claimed"/> bytes.</summary>
    private static string Refusal(string path, long claimed)
    {
        using var file = File.OpenHandle(path);
        return Assert.Throws<InvalidDataException>(() => NpyHeader.Read(file, claimed, "member")).Message;
    }
}
