using MoeGpuStats.Native;

namespace MoeGpuStats.Tests.Native;

/// <summary>
/// moegs_model_record_strided with int64 and int16 ids laid out [tokens, layers, k]: what the same ids
/// as packed int32 record, on both host engines; an unknown id type and ids misaligned for their size
/// are refused with the model as it was.
/// </summary>
public sealed unsafe partial class NativeApiTests
{
    [Theory]
    [MemberData(nameof(Engines))]
    public void Int64AndInt16IdsAtATokenStrideRecordAsPackedInt32Ids(string accelerator)
    {
        var random = new Random(47);
        // [layers, tokens, k] packed, then laid out [tokens, layers, k]; 9 is past the experts, -1 an empty slot.
        var packed = Enumerable.Range(0, Layers * Tokens * TopK).Select(_ => random.Next(-1, Experts + 2)).ToArray();
        var tokensFirst = new int[packed.Length];
        for (var l = 0; l < Layers; l++)
        {
            for (var t = 0; t < Tokens; t++)
            {
                packed.AsSpan((l * Tokens + t) * TopK, TopK).CopyTo(tokensFirst.AsSpan((t * Layers + l) * TopK));
            }
        }

        long[] wide = [.. tokensFirst.Select(id => id == Experts + 1 ? (1L << 32) | 1 : id)];   // low bits 1: still invalid
        short[] narrow = [.. tokensFirst.Select(id => (short)id)];
        var reference = Create(accelerator, Layers, Experts, 0, Window, -1f);
        var int64 = Create(accelerator, Layers, Experts, 0, Window, -1f);
        var int16 = Create(accelerator, Layers, Experts, 0, Window, -1f);
        try
        {
            Assert.Equal(Ok, Record(reference, packed, Layers, Tokens, TopK, 0, null, null, null));
            fixed (long* w = wide)
            fixed (short* n = narrow)
            {
                Assert.Equal(Ok, RecordIds(int64, (IntPtr)w, 1, Layers, Tokens, TopK, TopK, Layers * TopK, 0, 0, 0));
                Assert.Equal(Ok, RecordIds(int16, (IntPtr)n, 2, Layers, Tokens, TopK, TopK, Layers * TopK, 0, 0, 0));
                Assert.Equal(Reads(reference), Reads(int64));
                Assert.Equal(Reads(reference), Reads(int16));

                // With a valid-token count: the rows past it are left out (on "managed", never read).
                var valid = 7;
                Assert.Equal(Ok, Record(reference, packed, Layers, Tokens, TopK, 0, valid, null, null));
                Assert.Equal(Ok, RecordIds(int64, (IntPtr)w, 1, Layers, Tokens, TopK, TopK, Layers * TopK, (IntPtr)(&valid), 0, 0));
                Assert.Equal(Ok, RecordIds(int16, (IntPtr)n, 2, Layers, Tokens, TopK, TopK, Layers * TopK, (IntPtr)(&valid), 0, 0));
                Assert.Equal(Reads(reference), Reads(int64));
                Assert.Equal(Reads(reference), Reads(int16));

                var before = Reads(int64);
                Refused(RecordIds(int64, (IntPtr)w, 3, Layers, Tokens, TopK, TopK, Layers * TopK, 0, 0, 0), InvalidArgument,
                    "id_type = 3", "MOEGS_IDS_INT32 (0), MOEGS_IDS_INT64 (1) or MOEGS_IDS_INT16 (2)");
                Refused(RecordIds(int64, (IntPtr)w + 4, 1, Layers, Tokens, TopK, TopK, Layers * TopK, 0, 0, 0), InvalidArgument, "must be aligned to 8 bytes");
                Refused(RecordIds(int16, (IntPtr)n + 1, 2, Layers, Tokens, TopK, TopK, Layers * TopK, 0, 0, 0), InvalidArgument, "must be aligned to 2 bytes");
                // Strides of int64 ids whose bytes pass an int64: 2^60 ids of 8 bytes.
                Refused(RecordIds(int64, (IntPtr)w, 1, Layers, Tokens, TopK, 1L << 60, TopK, 0, 0, 0), InvalidArgument, "exceeds 1152921504606846975 ids", "8 each");
                Assert.Equal(before, Reads(int64));
            }

            // Int32 ids at the same token stride, and each id type with per-layer losses: what the packed ids with the same losses record.
            var int32 = Create(accelerator, Layers, Experts, 0, Window, -1f);
            try
            {
                float[] losses = [0.5f, 0.75f, 1.25f], zLosses = [0.02f, 0.03f, 0.05f];
                Assert.Equal(Ok, Record(reference, packed, Layers, Tokens, TopK, 0, null, losses, zLosses));
                fixed (int* i = tokensFirst)
                fixed (long* w = wide)
                fixed (short* n = narrow)
                fixed (float* l = losses, z = zLosses)
                {
                    // The int32 handle first takes the reference's steps so far, packed.
                    Assert.Equal(Ok, Record(int32, packed, Layers, Tokens, TopK, 0, null, null, null));
                    Assert.Equal(Ok, Record(int32, packed, Layers, Tokens, TopK, 0, 7, null, null));
                    Assert.Equal(Ok, RecordIds(int32, (IntPtr)i, 0, Layers, Tokens, TopK, TopK, Layers * TopK, 0, (IntPtr)l, (IntPtr)z));
                    Assert.Equal(Ok, RecordIds(int64, (IntPtr)w, 1, Layers, Tokens, TopK, TopK, Layers * TopK, 0, (IntPtr)l, (IntPtr)z));
                    Assert.Equal(Ok, RecordIds(int16, (IntPtr)n, 2, Layers, Tokens, TopK, TopK, Layers * TopK, 0, (IntPtr)l, (IntPtr)z));
                }

                Assert.Equal(Reads(reference), Reads(int32));
                Assert.Equal(Reads(reference), Reads(int64));
                Assert.Equal(Reads(reference), Reads(int16));

                // A valid-token count past the rows, or below 0, is clamped to [0, tokens] when read, on every engine.
                foreach (var given in new[] { Tokens + 5, -3 })
                {
                    Assert.Equal(Ok, Record(reference, packed, Layers, Tokens, TopK, 0, Math.Clamp(given, 0, Tokens), null, null));
                    Assert.Equal(Ok, Record(int32, packed, Layers, Tokens, TopK, 0, given, null, null));
                    Assert.Equal(Reads(reference), Reads(int32));
                }
            }
            finally
            {
                Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, int32));
            }
        }
        finally
        {
            foreach (var handle in new[] { reference, int64, int16 })
            {
                Assert.Equal(Ok, Call(&NativeApi.ModelDestroy, handle));
            }
        }
    }
}
