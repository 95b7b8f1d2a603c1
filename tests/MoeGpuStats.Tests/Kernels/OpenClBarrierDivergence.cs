using System.Collections;
using System.Text.RegularExpressions;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>
/// Finds the barriers of a kernel's OpenCL C, as ILGPU generates it, that only some work-items of a group may
/// reach: those inside a branch on a value that differs between work-items, before the branches meet again.
/// OpenCL leaves such a barrier undefined; PoCL ran the code under it on every work-item. ILGPU emits every
/// memory fence as a barrier too (<c>work_group_barrier(..., memory_scope_device)</c>), so a fence under
/// <c>if (thread == 0)</c> is one of them.
/// </summary>
/// <remarks>
/// ILGPU writes one statement a line, blocks as labels (<c>L_12: ;</c>), branches as <c>if (var3)</c> and two
/// <c>goto</c>s, values as <c>varN = ...;</c>. A value differs between work-items when it comes from
/// <c>get_local_id</c> (or a global or sub-group id), from an atomic (each work-item gets its own old value),
/// from a value that differs, or when it is assigned inside a branch on one (its value after the branches meet
/// depends on the path). A load through a pointer that does not differ gives the same value to every
/// work-item: the kernels read a group's shared result only after a barrier (so a race on memory read without
/// one is not caught here). A branch (an <c>if</c> or a <c>switch</c>)'s region is every block reachable from it
/// before its immediate post-dominator, where every path meets again. A line of no form it reads, or a function
/// beside the kernel, is refused rather than skipped, so a change in ILGPU's output fails the tests.
/// </remarks>
internal static partial class OpenClBarrierDivergence
{
    /// <summary>The lines of <paramref name="source"/>'s kernel that hold a barrier some work-items may not reach, each with the branch that divides them.</summary>
    /// <exception cref="InvalidDataException">The source has no kernel, or a barrier outside it (in a function the kernel calls), which this analysis does not follow.</exception>
    public static IReadOnlyList<string> Find(string source)
    {
        var lines = source.ReplaceLineEndings("\n").Split('\n');
        var start = Array.FindIndex(lines, line => line.StartsWith("kernel void ", StringComparison.Ordinal));
        if (start < 0)
        {
            throw new InvalidDataException("No kernel in the OpenCL C.");
        }

        if (lines.Take(start).FirstOrDefault(line => FunctionLine().IsMatch(line)) is { } function)
        {
            // A callee's barriers and its result (get_local_id in it) are not followed: refuse rather than miss them.
            throw new InvalidDataException($"A function beside the kernel, '{function.Trim()}': not analysed.");
        }

        var blocks = Blocks(lines.Skip(start).ToArray());
        var postDominators = PostDominators(blocks);
        var sizes = postDominators.Select(Count).ToArray();
        var divergent = new HashSet<string>(StringComparer.Ordinal);
        var found = new List<string>();
        bool grew;
        do
        {
            grew = false;
            foreach (var block in blocks)
            {
                foreach (var (target, value) in block.Assignments)
                {
                    if (!divergent.Contains(target) && DiffersPerWorkItem(value, divergent))
                    {
                        grew |= divergent.Add(target);
                    }
                }
            }

            found.Clear();
            for (var b = 0; b < blocks.Count; b++)
            {
                if (blocks[b].Condition is not { } condition || !divergent.Contains(condition))
                {
                    continue;
                }

                foreach (var inside in Region(blocks, postDominators, sizes, b))
                {
                    found.AddRange(blocks[inside].Barriers.Select(barrier => $"{barrier.Trim()} in {blocks[inside].Label}, under the branch on {condition} in {blocks[b].Label}"));
                    foreach (var (target, _) in blocks[inside].Assignments)
                    {
                        grew |= divergent.Add(target);
                    }
                }
            }
        }
        while (grew);

        return found.Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>The target of a return.</summary>
    private const string Exit = "exit";

    private sealed record Block(string Label, List<(string Target, string Value)> Assignments, List<string> Barriers)
    {
        public List<int> Successors { get; } = [];

        public List<string> Targets { get; } = [];

        public string? Condition { get; set; }
    }

    private static bool IsBarrier(string line) => Barrier().IsMatch(line);

    private static bool DiffersPerWorkItem(string value, HashSet<string> divergent) =>
        WorkItemSource().IsMatch(value) || Variable().Matches(value).Any(m => divergent.Contains(m.Value));

    /// <summary>The kernel's blocks, the first being its entry, with their successors (an index past the last is the exit).</summary>
    private static List<Block> Blocks(string[] kernel)
    {
        var blocks = new List<Block> { new("entry", [], []) };
        var current = blocks[0];
        var ended = false;
        for (var i = 0; i < kernel.Length; i++)
        {
            var line = kernel[i].Trim();
            if (LabelLine().Match(line) is { Success: true } label)
            {
                var next = new Block(label.Groups[1].Value, [], []);
                if (!ended)
                {
                    current.Targets.Add(next.Label);
                }

                blocks.Add(next);
                current = next;
                ended = false;
                continue;
            }

            if (ended)
            {
                continue;
            }

            if (IfLine().Match(line) is { Success: true } branch)
            {
                current.Condition = branch.Groups[1].Value;
                var taken = kernel[++i].Trim();
                if (taken.StartsWith("return", StringComparison.Ordinal))
                {
                    // An early return (implicitly grouped kernels): the code after it goes on in a block of its own.
                    var next = new Block($"after line {i + 1}", [], []);
                    current.Targets.AddRange([Exit, next.Label]);
                    blocks.Add(next);
                    current = next;
                    continue;
                }

                current.Targets.Add(Target(taken));
                current.Targets.Add(Target(kernel[++i].Trim()));
                ended = true;
            }
            else if (GotoLine().Match(line) is { Success: true } jump)
            {
                current.Targets.Add(jump.Groups[1].Value);
                ended = true;
            }
            else if (line.StartsWith("return", StringComparison.Ordinal) || line == "}")
            {
                current.Targets.Add(Exit);
                ended = true;
            }
            else if (SwitchLine().Match(line) is { Success: true } choice)
            {
                current.Condition = choice.Groups[1].Value;
                while (!kernel[++i].Trim().StartsWith('}'))
                {
                    if (GotoLine().Match(kernel[i].Trim()) is { Success: true } target)
                    {
                        current.Targets.Add(target.Groups[1].Value);
                    }
                }

                ended = true;
            }
            else if (IsBarrier(line))
            {
                current.Barriers.Add(line);
            }
            else if (Assignment().Match(line) is { Success: true } assignment)
            {
                current.Assignments.Add((assignment.Groups[1].Value, assignment.Groups[2].Value));
            }
            else if (WorkItemSource().IsMatch(line) && !line.Contains('='))
            {
                // A bare atomic call (compare-exchange) writes each work-item's old value through its pointer argument.
                foreach (Match written in AddressOf().Matches(line))
                {
                    current.Assignments.Add((written.Groups[1].Value, line));
                }
            }
            else if (!Ignored().IsMatch(line))
            {
                throw new InvalidDataException($"Line {i + 1} of the kernel, '{line}', is no statement this analysis reads.");
            }
        }

        var index = blocks.Select((block, b) => (block.Label, b)).ToDictionary(pair => pair.Label, pair => pair.b, StringComparer.Ordinal);
        index[Exit] = blocks.Count;
        foreach (var block in blocks)
        {
            block.Successors.AddRange(block.Targets.Count == 0 ? [blocks.Count] : block.Targets.Select(target => index[target]));
        }

        return blocks;
    }

    private static string Target(string line) =>
        GotoLine().Match(line) is { Success: true } jump ? jump.Groups[1].Value : throw new InvalidDataException($"'{line}' after an if is no goto.");

    /// <summary>Each block's post-dominators, itself included, as bits over the blocks and the exit (the last bit).</summary>
    private static BitArray[] PostDominators(List<Block> blocks)
    {
        var count = blocks.Count + 1;
        var sets = Enumerable.Range(0, count).Select(_ => new BitArray(count, true)).ToArray();
        sets[blocks.Count] = new BitArray(count) { [blocks.Count] = true };
        bool changed;
        do
        {
            changed = false;
            for (var b = blocks.Count - 1; b >= 0; b--)
            {
                var meet = new BitArray(count, true);
                foreach (var successor in blocks[b].Successors)
                {
                    meet.And(sets[successor]);
                }

                meet[b] = true;
                if (!Same(meet, sets[b]))
                {
                    sets[b] = meet;
                    changed = true;
                }
            }
        }
        while (changed);

        return sets;
    }

    /// <summary>The blocks reachable from <paramref name="branch"/>'s successors before its immediate post-dominator.</summary>
    private static HashSet<int> Region(List<Block> blocks, BitArray[] postDominators, int[] sizes, int branch)
    {
        // The post-dominators form a chain: the immediate one is post-dominated by all the others, so it has the most.
        var join = Enumerable.Range(0, blocks.Count + 1)
            .Where(p => p != branch && postDominators[branch][p])
            .MaxBy(p => sizes[p]);
        var region = new HashSet<int>();
        var pending = new Stack<int>(blocks[branch].Successors);
        while (pending.TryPop(out var block))
        {
            if (block == join || block == blocks.Count || !region.Add(block))
            {
                continue;
            }

            foreach (var successor in blocks[block].Successors)
            {
                pending.Push(successor);
            }
        }

        return region;
    }

    private static bool Same(BitArray left, BitArray right)
    {
        for (var i = 0; i < left.Length; i++)
        {
            if (left[i] != right[i])
            {
                return false;
            }
        }

        return true;
    }

    private static int Count(BitArray bits)
    {
        var count = 0;
        for (var i = 0; i < bits.Length; i++)
        {
            count += bits[i] ? 1 : 0;
        }

        return count;
    }

    [GeneratedRegex(@"\b(work_group_barrier|barrier|sub_group_barrier|work_group_broadcast|work_group_all|work_group_any|work_group_reduce_\w+|work_group_scan_\w+)\s*\(")]
    private static partial Regex Barrier();

    [GeneratedRegex(@"\b(get_local_id|get_global_id|get_local_linear_id|get_global_linear_id|get_sub_group_local_id|get_sub_group_id|atomic_\w+|atom_\w+)\s*\(")]
    private static partial Regex WorkItemSource();

    [GeneratedRegex(@"\bvar\d+\b")]
    private static partial Regex Variable();

    [GeneratedRegex(@"^(L_\d+):\s*;$")]
    private static partial Regex LabelLine();

    [GeneratedRegex(@"^if\s*\((var\d+)\)$")]
    private static partial Regex IfLine();

    [GeneratedRegex(@"^switch\s*\((var\d+)\)\s*\{$")]
    private static partial Regex SwitchLine();

    /// <summary>What changes no value a branch reads: the signature, declarations, empty statements, stores through a pointer.</summary>
    [GeneratedRegex(@"^($|;|\{|kernel void .*|[\w ]+\*?\s+(var|view_)\d+(\[\d+\])?[,);]$|\*\s*var\d+\s*=.*;$)")]
    private static partial Regex Ignored();

    [GeneratedRegex(@"&\s*(var\d+)\b")]
    private static partial Regex AddressOf();

    [GeneratedRegex(@"^\w[\w\s\*]*\s\w+\($")]
    private static partial Regex FunctionLine();

    [GeneratedRegex(@"^goto\s+(L_\d+)\s*;$")]
    private static partial Regex GotoLine();

    [GeneratedRegex(@"^(var\d+)(?:\.field_\d+)*\s*=\s*(.*);$")]
    private static partial Regex Assignment();
}
