namespace MoeGpuStats.Cli.Input;

/// <summary>The formats <c>replay</c> reads.</summary>
internal enum TraceFormat
{
    Npy,
    Npz,
    JsonLines,
}

/// <summary>Opens a routing trace with the reader its format needs: by a magic in its first bytes, else by its name, else by a JSON start.</summary>
internal static class TraceFile
{
    /// <summary>The names replay knows, for messages.</summary>
    public const string Names = ".npy, .npz, .jsonl or .ndjson";

    /// <param name="path">The file.</param>
    /// <param name="layout"><c>--layout</c>, or null.</param>
    /// <param name="members"><c>--members</c>, or null.</param>
    /// <exception cref="InvalidDataException">A file replay cannot read; the message names it.</exception>
    /// <exception cref="IdLayoutException">An option that does not go with the file's format or shape.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file may not be read.</exception>
    /// <param name="longRead">Told before a read of the whole file ahead of the replay (JSON lines are indexed first), with the size from which that read is long and why it is made.</param>
    public static IRoutingTrace Open(string path, IdLayout? layout, NpzMembers? members, Action<long, string>? longRead = null)
    {
        var format = FormatOf(path);
        if (members is { } holds && format != TraceFormat.Npz)
        {
            throw new IdLayoutException($"--members {holds.ToString().ToLowerInvariant()}: only an .npz archive has members; {path} is {Describe(format)}.");
        }

        if (layout is not null && format == TraceFormat.JsonLines)
        {
            throw new IdLayoutException($"--layout {layout.Name}: {path} is {Describe(format)}, whose lines give its layers and passes (by their layer, step and position fields, or their order where those are absent); --layout is for .npy and .npz files.");
        }

        if (members == NpzMembers.Layers && layout is { HasLayers: true })
        {
            throw new IdLayoutException($"--layout {layout.Name}: with --members layers each member is one layer; give {IdLayout.StepsTokensK.Name} or {IdLayout.TokensK.Name}.");
        }

        return format switch
        {
            TraceFormat.Npy => NpyIds.Open(path, layout),
            TraceFormat.Npz => NpzIds.Open(path, layout, members),
            _ => OpenJsonLines(path, longRead),
        };
    }

    private static JsonLinesTrace OpenJsonLines(string path, Action<long, string>? longRead)
    {
        // Parsed at tens of MB/s: 128 MiB is seconds.
        longRead?.Invoke(128L << 20, "to find its forward passes, before the replay starts");
        return JsonLinesTrace.Open(path);
    }

    /// <summary>
    /// The format of <paramref name="path"/>: a .npy magic or a zip's in its first bytes, as np.load reads a file
    /// whatever its name; else its extension; else a JSON object at its start.
    /// </summary>
    /// <exception cref="InvalidDataException">Neither says a format replay reads.</exception>
    public static TraceFormat FormatOf(string path)
    {
        Span<byte> first = stackalloc byte[8];
        int read;
        using (var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            read = NpyHeader.ReadFully(file, first, 0);
        }

        var start = first[..read];
        if (start.StartsWith(NpyHeader.MagicBytes))
        {
            return TraceFormat.Npy;
        }

        // A zip starts with a local file header, or with the end of its directory when it is empty.
        if (start.StartsWith("PK\x03\x04"u8) || start.StartsWith("PK\x05\x06"u8))
        {
            return TraceFormat.Npz;
        }

        switch (Path.GetExtension(path).ToLowerInvariant())
        {
            case ".npy":
                return TraceFormat.Npy;
            case ".npz":
                return TraceFormat.Npz;
            case ".jsonl" or ".ndjson":
                return TraceFormat.JsonLines;
        }

        if (start.StartsWith("\uFEFF"u8) ? start[3..].TrimStart(" \t\r\n"u8).StartsWith("{"u8) : start.TrimStart(" \t\r\n"u8).StartsWith("{"u8))
        {
            return TraceFormat.JsonLines;
        }

        throw new InvalidDataException($"{path}: neither its name nor its first bytes say a format replay reads{MoeGpuStats.Serialization.CompressedData.Hint(start)}; give a {Names} file.");
    }

    private static string Describe(TraceFormat format) => format switch
    {
        TraceFormat.Npy => "a .npy file",
        TraceFormat.Npz => "an .npz archive",
        _ => "a JSON-lines trace",
    };
}
