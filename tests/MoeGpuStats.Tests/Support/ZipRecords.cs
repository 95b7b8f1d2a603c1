namespace MoeGpuStats.Tests.Support;

/// <summary>A zip archive's end records written byte by byte, as a test edits them: the end record, and the zip64 record with its locator.</summary>
internal static class ZipRecords
{
    /// <summary>An end-of-central-directory record (APPNOTE 4.3.16) on disk 0.</summary>
    internal static byte[] End(ushort members, uint bytes, uint offset = 0, ushort commentLength = 0)
    {
        var record = new byte[22];
        BitConverter.TryWriteBytes(record, 0x06054b50u);
        BitConverter.TryWriteBytes(record.AsSpan(8), members);
        BitConverter.TryWriteBytes(record.AsSpan(10), members);
        BitConverter.TryWriteBytes(record.AsSpan(12), bytes);
        BitConverter.TryWriteBytes(record.AsSpan(16), offset);
        BitConverter.TryWriteBytes(record.AsSpan(20), commentLength);
        return record;
    }

    /// <summary>A zip64 end-of-central-directory record (APPNOTE 4.3.14) of <paramref name="onDisk"/> members on this disk, <paramref name="total"/> in all, the directory at <paramref name="offset"/>.</summary>
    internal static byte[] Zip64Record(ulong onDisk, ulong total, ulong bytes, ulong offset = 0)
    {
        var record = new byte[56];
        BitConverter.TryWriteBytes(record, 0x06064b50u);
        BitConverter.TryWriteBytes(record.AsSpan(4), 44UL);
        BitConverter.TryWriteBytes(record.AsSpan(24), onDisk);
        BitConverter.TryWriteBytes(record.AsSpan(32), total);
        BitConverter.TryWriteBytes(record.AsSpan(40), bytes);
        BitConverter.TryWriteBytes(record.AsSpan(48), offset);
        return record;
    }

    /// <summary>A zip64 end-of-central-directory locator (APPNOTE 4.3.15) pointing at byte <paramref name="record"/>.</summary>
    internal static byte[] Locator(long record, uint signature = 0x07064b50)
    {
        var locator = new byte[20];
        BitConverter.TryWriteBytes(locator, signature);
        BitConverter.TryWriteBytes(locator.AsSpan(8), record);
        BitConverter.TryWriteBytes(locator.AsSpan(16), 1u);
        return locator;
    }
}
