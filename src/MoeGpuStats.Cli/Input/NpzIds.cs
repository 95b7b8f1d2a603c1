using System.IO.Compression;
using System.Text.RegularExpressions;

namespace MoeGpuStats.Cli.Input;

/// <summary>What each member of an .npz archive holds (<c>replay --members</c>).</summary>
internal enum NpzMembers
{
    /// <summary>Forward passes: the members' steps one after another, each member read as a .npy file with <c>--layout</c>.</summary>
    Steps,

    /// <summary>Layers: member l is layer l, <c>[steps, tokens, k]</c> (or <c>[tokens, k]</c> for one step), all of one shape.</summary>
    Layers,
}

/// <summary>
/// Top-k ids saved with <c>np.savez</c> or <c>np.savez_compressed</c>: a zip archive of .npy members,
/// stored or deflated, taken in the archive's order (np.savez writes <c>arr_0</c>, <c>arr_1</c>, … in
/// order, after any keyword members). Members of forward passes may differ in tokens, as a prefill and
/// decode batches do; every member has the same k and layers.
/// </summary>
/// <remarks>
/// Each member's header is read when the archive is opened and checked against the length the archive's
/// directory claims for it, and that length against the archive's (deflate makes at most about 1,032
/// bytes of one), so no member can make replay allocate more than its ids. A member is read forward,
/// one step after another; only the member at hand keeps a stream open, or every layer's with <c>--members layers</c>.
/// </remarks>
internal sealed partial class NpzIds : IRoutingTrace
{
    /// <summary>Deflate's largest ratio of output to input (a long run of one byte gives about 1,032 to 1).</summary>
    private const long MaxDeflateRatio = 1_033;

    private readonly ZipArchive _archive;
    private readonly NpyIds[] _members;
    private readonly NpzMembers _holds;

    /// <summary>With <see cref="NpzMembers.Steps"/>: the first step of each member, and the total last.</summary>
    private readonly int[] _firstStep;

    /// <summary>With <see cref="NpzMembers.Steps"/>: the member whose stream is open, or -1.</summary>
    private int _open = -1;

    private NpzIds(ZipArchive archive, NpyIds[] members, NpzMembers holds, int[] firstStep, string axes, IReadOnlyList<string> notes)
    {
        _archive = archive;
        _members = members;
        _holds = holds;
        _firstStep = firstStep;
        Axes = axes;
        Notes = notes;
        IdType = string.Join(", ", members.Select(member => member.DType).Distinct());
        MaxTokens = members.Max(member => member.Tokens);
    }

    public string Axes { get; }

    public string LayersHint => "--layout names the axis that holds them; --members layers makes each member a layer";

    public IdLayout Layout => _members[0].Layout;

    IdLayout? IRoutingTrace.Layout => Layout;

    public string IdType { get; }

    public int Steps => _firstStep[^1];

    public bool HasLayers => _holds == NpzMembers.Layers || Layout.HasLayers;

    public int Layers => _holds == NpzMembers.Layers ? _members.Length : _members[0].Layers;

    public int TopK => _members[0].TopK;

    public int MaxTokens { get; }

    public IReadOnlyList<string> Notes { get; }

    /// <param name="path">The archive.</param>
    /// <param name="layout">Each member's axes (<c>--layout</c>); null for the default of its rank.</param>
    /// <param name="given">What each member holds (<c>--members</c>); null for forward passes, the default.</param>
    /// <exception cref="InvalidDataException">Not a zip archive, a member that is not a .npy array replay reads, or members that do not fit together; the message names the archive or the member.</exception>
    /// <exception cref="IdLayoutException">A 3-D member of forward passes without <paramref name="layout"/>, or a layout of another rank than a member's.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    public static NpzIds Open(string path, IdLayout? layout, NpzMembers? given)
    {
        var holds = given ?? NpzMembers.Steps;
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
        ZipDirectory? directory;
        try
        {
            directory = ZipDirectory.Read(file);
        }
        catch (InvalidDataException refused)
        {
            file.Dispose();
            throw new InvalidDataException($"{path}: {refused.Message}");
        }
        catch
        {
            file.Dispose();
            throw;
        }

        if (LargeDirectory(path, directory, holds) is { } large)
        {
            file.Dispose();
            throw new InvalidDataException(large);
        }

        ZipArchive archive;
        IReadOnlyList<ZipArchiveEntry> entries;
        try
        {
            archive = new ZipArchive(file, ZipArchiveMode.Read, leaveOpen: false);
            entries = archive.Entries;
        }
        catch (InvalidDataException exception)
        {
            file.Dispose();
            throw new InvalidDataException($"{path}: not a readable .npz archive ({ErrorText.Clause(exception)})");
        }

        var members = new List<NpyIds>();
        try
        {
            Func<string, IReadOnlyList<long>, IdLayout> choose = holds == NpzMembers.Layers
                ? (name, dims) => IdLayout.ForLayerMember(name, dims, layout)
                : (name, dims) => StepsMemberLayout(name, dims, layout, entries.Count);
            if (entries.Count == 0)
            {
                throw new InvalidDataException($"{path}: the archive holds no arrays; nothing to replay.");
            }

            // Checked again as the archive reader listed them, should it have read its counts elsewhere than ZipDirectory did.
            if (LargeDirectory(path, new ZipDirectory((ulong)entries.Count, 0), holds) is { } listed)
            {
                throw new InvalidDataException(listed);
            }

            var compressed = 0L;
            foreach (var entry in entries)
            {
                var name = UnsafeText.Escaped($"{path}[{KeyOf(entry)}]");
                if (entry.IsEncrypted)
                {
                    throw new InvalidDataException($"{name}: encrypted (a password-protected archive), which replay cannot read; np.savez encrypts nothing: give the archive unencrypted.");
                }

                CheckClaimedLength(entry, name, file.Length);

                // Entries whose data overlap (a directory pointing many names at one deflated member) would each
                // pass the per-member bound, while the archive as a whole unpacks to any size: members' data are
                // disjoint parts of the file, so their compressed sizes sum to less than its length.
                compressed += entry.CompressedLength;
                if (compressed > file.Length)
                {
                    throw new InvalidDataException($"{path}: its first {members.Count + 1:N0} members claim {compressed:N0} compressed bytes, more than the archive's {file.Length:N0}: their data overlap, and the archive is corrupt.");
                }

                NpyIds member;
                try
                {
                    member = NpyIds.Open(new NpzMemberBytes(entry, name), name, choose, holds == NpzMembers.Layers ? IdLayout.OneLayer : IdLayout.All);
                }
                catch (InvalidDataException) when (NpzMemberBytes.Corruption(entry, name) is { } corrupt)
                {
                    throw new InvalidDataException(corrupt);
                }

                members.Add(member);
                member.Close();
                CheckFits(members[0], member, ShownKey(entries[0]), holds);
            }

            var firstStep = holds == NpzMembers.Layers ? [members[0].Steps] : FirstSteps(path, members);
            var first = members[0];
            if (holds == NpzMembers.Layers && (long)members.Count * first.IdsPerStep > NpyIds.MaxIdsPerStep)
            {
                throw new InvalidDataException($"{path}: {members.Count:N0} layers of {first.Tokens:N0} tokens x {first.TopK} ids: {(long)members.Count * first.IdsPerStep:N0} ids per step; replay reads at most {NpyIds.MaxIdsPerStep:N0}.");
            }

            var axes = holds == NpzMembers.Layers ? $"a member per layer, {first.Layout.Name}"
                : members.Count == 1 ? $"{first.Layout.Name} in its one member"
                : $"{first.Layout.Name} in each of {members.Count:N0} members";
            return new NpzIds(
                archive, [.. members], holds, firstStep, axes, [.. RepeatedNameNotes(path, entries), .. OrderNotes(path, entries, holds), .. LayerNameNotes(path, entries, given)]);
        }
        catch
        {
            foreach (var member in members)
            {
                member.Dispose();
            }

            archive.Dispose();
            throw;
        }
    }

    public int TokensAt(int step) => _holds == NpzMembers.Layers ? _members[0].Tokens : _members[MemberOf(step)].Tokens;

    public int ReadStep(int step, Span<int> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(step, Steps);
        if (_holds == NpzMembers.Layers)
        {
            var perLayer = _members[0].IdsPerStep;
            for (var layer = 0; layer < _members.Length; layer++)
            {
                _members[layer].ReadStep(step, destination.Slice(layer * perLayer, perLayer));
            }

            return _members[0].Tokens;
        }

        var member = MemberOf(step);
        if (_open != member && _open >= 0)
        {
            // Forward passes are read in order: a member once passed is not read again, so its decoder goes.
            _members[_open].Close();
        }

        _open = member;
        return _members[member].ReadStep(step - _firstStep[member], destination);
    }

    public string? UnsignedPadding(long maxId) =>
        _members.Select(member => NpyIds.UnsignedPaddingText(member.DType, member.UnsignedMax, maxId)).FirstOrDefault(text => text is not null);

    public string? UnsignedPaddingWarning()
    {
        var held = _members.Where(member => member.UnsignedMaxIds > 0).ToArray();
        return held.Length == 0 ? null : NpyIds.UnsignedPaddingWarning(held.Sum(member => member.UnsignedMaxIds), held[0].DType, held[0].UnsignedMax);
    }

    public long MaxId()
    {
        var max = -1L;
        foreach (var member in _members)
        {
            max = Math.Max(max, member.MaxId());
            member.Close();
        }

        _open = -1;
        return max;
    }

    public void Dispose()
    {
        foreach (var member in _members)
        {
            member.Dispose();
        }

        _archive.Dispose();
    }

    /// <summary>A member's key as <c>np.load</c> gives it: its name less <c>.npy</c>.</summary>
    private static string KeyOf(ZipArchiveEntry entry) =>
        entry.FullName.EndsWith(".npy", StringComparison.Ordinal) ? entry.FullName[..^4] : entry.FullName;

    /// <summary>A member's key as a line shows it: an archive may name a member with a line break or a terminal's escape.</summary>
    private static string ShownKey(ZipArchiveEntry entry) => UnsafeText.Escaped(KeyOf(entry));

    /// <summary>
    /// The most members an archive of forward passes may list: a member per step of a long run is 100,000s, and the
    /// archive reader keeps an object of about 1 KB a member for the whole replay.
    /// </summary>
    internal const int MaxMembers = 1 << 18;

    /// <summary>The longest directory read, in bytes: <see cref="MaxMembers"/> members with names of a hundred bytes or more.</summary>
    private const long MaxDirectoryBytes = 64L << 20;

    /// <summary>Why replay does not read a directory that lists more members than it reads, or takes more bytes; null where it reads it.</summary>
    private static string? LargeDirectory(string path, ZipDirectory? directory, NpzMembers holds)
    {
        var most = holds == NpzMembers.Layers ? ModelRoutingStatsOptions.MaxLayers : MaxMembers;
        return directory switch
        {
            { } listed when listed.Members > (ulong)most => holds == NpzMembers.Layers
                ? $"{path}: {listed.Members:N0} members, one per layer (--members layers); a model holds at most {ModelRoutingStatsOptions.MaxLayers:N0} layers."
                : $"{path}: the archive's directory lists {listed.Members:N0} members; replay reads at most {MaxMembers:N0} (save the trace in fewer, larger arrays).",
            { } sized when sized.Bytes > MaxDirectoryBytes => $"{path}: the archive's directory takes {sized.Bytes:N0} bytes; replay reads one of at most {MaxDirectoryBytes:N0} (its members' names and fields).",
            _ => null,
        };
    }

    /// <summary>Refuses a length the archive's directory claims that the archive cannot hold, before the member's header is trusted with it.</summary>
    private static void CheckClaimedLength(ZipArchiveEntry entry, string name, long archiveLength)
    {
        // A zip64 size is unsigned: past 2^63 - 1, .NET reads it negative.
        if (entry.Length < 0 || entry.CompressedLength < 0)
        {
            throw new InvalidDataException($"{name}: the archive's directory claims {(ulong)entry.Length:N0} bytes from {(ulong)entry.CompressedLength:N0} compressed, more than any file holds: the archive is corrupt.");
        }

        if (entry.CompressedLength > archiveLength)
        {
            throw new InvalidDataException($"{name}: the archive's directory claims {entry.CompressedLength:N0} compressed bytes, the archive has {archiveLength:N0}: it is truncated or corrupt.");
        }

        if (entry.Length / MaxDeflateRatio > entry.CompressedLength)
        {
            throw new InvalidDataException($"{name}: the archive's directory claims {entry.Length:N0} bytes from {entry.CompressedLength:N0} compressed, more than deflate makes: the archive is corrupt.");
        }
    }

    /// <summary>Refuses a member that does not go with the first: other axes, k or layers, or (one per layer) another shape.</summary>
    private static void CheckFits(NpyIds first, NpyIds member, string firstKey, NpzMembers holds)
    {
        if (member == first)
        {
            return;
        }

        var name = member.Path;
        if (holds == NpzMembers.Layers)
        {
            if ((member.Steps, member.Tokens, member.TopK) != (first.Steps, first.Tokens, first.TopK))
            {
                throw new InvalidDataException($"{name}: shape {member.Shape}, the first member {firstKey} (layer 0) has {first.Shape}; with --members layers every member is one layer of the same steps, tokens and k.");
            }

            return;
        }

        if (member.Layout != first.Layout)
        {
            throw new InvalidDataException($"{name}: shape {member.Shape} is read as [{member.Layout.Name}], the first member {firstKey} as [{first.Layout.Name}]; every member holds the same axes.");
        }

        if (member.TopK != first.TopK)
        {
            throw new InvalidDataException($"{name}: shape {member.Shape} has k = {member.TopK}, the first member {firstKey} has k = {first.TopK}; every member holds the same k.");
        }

        if (member.Layers != first.Layers)
        {
            throw new InvalidDataException($"{name}: shape {member.Shape} has {member.Layers:N0} layers, the first member {firstKey} has {first.Layers:N0}; every forward pass holds the same layers.");
        }
    }

    /// <summary>The first step of each member of forward passes, and the total, at most <see cref="int.MaxValue"/>.</summary>
    private static int[] FirstSteps(string path, List<NpyIds> members)
    {
        var firstStep = new int[members.Count + 1];
        var total = 0L;
        for (var m = 0; m < members.Count; m++)
        {
            firstStep[m] = (int)total;
            total += members[m].Steps;
            if (total > int.MaxValue)
            {
                throw new InvalidDataException($"{path}: more than {int.MaxValue:N0} steps in all; replay reads at most that many.");
            }
        }

        firstStep[^1] = (int)total;
        return firstStep;
    }

    /// <summary>
    /// A member of forward passes's layout (<see cref="IdLayout.For(string, IReadOnlyList{long}, IdLayout?)"/>); a 3-D
    /// member without a layout, in an archive of several, may also be one layer's steps, so the refusal names
    /// <c>--members layers</c> too: following its --layout advice alone would read each layer as a step.
    /// </summary>
    private static IdLayout StepsMemberLayout(string name, IReadOnlyList<long> dims, IdLayout? layout, int members)
    {
        try
        {
            return IdLayout.For(name, dims, layout);
        }
        catch (IdLayoutException refused) when (layout is null && members > 1)
        {
            throw new IdLayoutException($"{refused.Message} If each of the archive's {members:N0} members is one layer, give --members layers instead.");
        }
    }

    /// <summary>
    /// A note where members named as layers (<c>layer_0</c>, <c>layers.3</c>, <c>Layer12</c>) are read as forward passes because
    /// <c>--members</c> was not given: the ids cannot tell a layer from a step, the names can hint at it.
    /// </summary>
    private static IEnumerable<string> LayerNameNotes(string path, IReadOnlyList<ZipArchiveEntry> entries, NpzMembers? given)
    {
        if (given is null && entries.Count > 1 && entries.All(entry => LayerName().IsMatch(KeyOf(entry))))
        {
            yield return $"note: {UnsafeText.Escaped(path)}: its members are named as layers ({ShownKey(entries[0])}, {ShownKey(entries[1])}, ...) and are read as forward passes, one after another (--members steps, the default); give --members layers if member l is layer l.";
        }
    }

    /// <summary>
    /// A warning for each name that several members share (np.savez never writes one; an archive
    /// appended to does): replay takes every one of them in the archive's order, where np.load reads
    /// only the last.
    /// </summary>
    private static IEnumerable<string> RepeatedNameNotes(string path, IReadOnlyList<ZipArchiveEntry> entries) =>
        entries.GroupBy(entry => entry.FullName, StringComparer.Ordinal)
            .Where(group => group.Count() > 1)
            .Select(group => $"warning: {UnsafeText.Escaped(path)}: {group.Count():N0} members are named {ShownKey(group.First())}; replay takes each of them in the archive's order, where np.load reads only the last.");

    /// <summary>
    /// A warning when the members' names end in numbers that the archive's order does not follow (keys
    /// sorted as text put <c>layer_10</c> before <c>layer_2</c>): replay takes the archive's order, not the numbers.
    /// </summary>
    private static IReadOnlyList<string> OrderNotes(string path, IReadOnlyList<ZipArchiveEntry> entries, NpzMembers holds)
    {
        var numbers = new List<(string Key, long Number)>();
        foreach (var entry in entries)
        {
            var key = KeyOf(entry);
            var match = TrailingNumber().Match(key);
            if (!match.Success || !long.TryParse(match.Value, System.Globalization.CultureInfo.InvariantCulture, out var number))
            {
                return [];
            }

            numbers.Add((key, number));
        }

        for (var i = 1; i < numbers.Count; i++)
        {
            if (numbers[i].Number < numbers[i - 1].Number)
            {
                return [$"warning: {UnsafeText.Escaped(path)}: replay takes the members in the archive's order, and {UnsafeText.Escaped(numbers[i - 1].Key)} comes before {UnsafeText.Escaped(numbers[i].Key)}; if the numbers give the order of the {(holds == NpzMembers.Layers ? "layers" : "forward passes")}, save the members in that order."];
            }
        }

        return [];
    }

    /// <summary>The member of forward passes that holds <paramref name="step"/>.</summary>
    private int MemberOf(int step)
    {
        var at = Array.BinarySearch(_firstStep, 0, _members.Length, step);
        return at >= 0 ? at : ~at - 1;
    }

    [GeneratedRegex(@"[0-9]{1,18}$")]
    private static partial Regex TrailingNumber();

    /// <summary>A member's key that names a layer by its number and nothing else: <c>layer_0</c>, <c>layers.3</c>, <c>Layer12</c>.</summary>
    [GeneratedRegex(@"^layers?[._-]?[0-9]+$", RegexOptions.IgnoreCase)]
    private static partial Regex LayerName();
}
