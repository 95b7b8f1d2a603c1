using System.Runtime.InteropServices;

namespace MoeGpuStats.Cli.Input;

/// <summary>
/// Where each forward pass of a JSON-lines trace lies, in file order: what a replay reads each pass again from.
/// Kept in blocks of a fixed size, one pass a record of 28 bytes: growing copies nothing, and nothing past the
/// last block is spare, where lists grown by doubling hold up to twice their passes and, while they grow, three times.
/// </summary>
internal sealed class JsonTracePassIndex
{
    private const int BlockBits = 11;
    private const int BlockLength = 1 << BlockBits;

    private readonly List<Pass[]> _blocks = [];

    /// <summary>The passes indexed.</summary>
    public int Count { get; private set; }

    /// <summary>The most tokens a pass holds; 0 before the first.</summary>
    public int MaxTokens { get; private set; }

    /// <summary>Pass <paramref name="step"/>: its lines' bytes, from its first line's start to past its last line's newline; the first line's number; its tokens.</summary>
    public Pass this[int step] => _blocks[step >> BlockBits][step & (BlockLength - 1)];

    public void Add(Pass pass)
    {
        if ((Count & (BlockLength - 1)) == 0)
        {
            _blocks.Add(new Pass[BlockLength]);
        }

        _blocks[^1][Count & (BlockLength - 1)] = pass;
        MaxTokens = Math.Max(MaxTokens, pass.Tokens);
        Count++;
    }

    /// <summary>One pass; packed to 4 bytes, so that its token count takes 4 bytes rather than 8.</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    internal readonly record struct Pass(long Start, long End, long FirstLine, int Tokens);
}
