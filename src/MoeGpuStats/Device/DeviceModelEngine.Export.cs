using ILGPU.Runtime;
using MoeGpuStats.Engines;
using MoeGpuStats.Kernels;
using MoeGpuStats.Kernels.Model;
using static MoeGpuStats.Kernels.RoutingStateLayout;

namespace MoeGpuStats.Device;

/// <summary>The state copied back whole, for a snapshot or JSON.</summary>
internal sealed partial class DeviceModelEngine
{
    /// <remarks>
    /// The state is staged on the device and copied back with the lock released for the copy, as a read
    /// (<see cref="ReadBack"/>): the state without the window ring (what JSON saves) in the read-back
    /// buffer, one copy; with the ring, the largest part by far, copied under the lock into a device buffer of
    /// its size taken for the snapshot, then back with the lock released, a second copy (the stream drained by
    /// the first; before the window wraps, of the rows that hold steps alone), so that a step on another thread
    /// does not wait for the ring's copy.
    /// </remarks>
    /// <exception cref="InsufficientMemoryException">With the ring, the device could not hold the ring's copy; the message gives its size. The statistics are unchanged.</exception>
    public override ModelState Export(bool withRing = true)
    {
        lock (_readGate)
        {
            ThrowIfUnusable();
            using var ringCopy = withRing ? DeviceMemory.Allocate<uint>(Accelerator, _views.WindowRing.Length, "a snapshot's copy of the window ring") : null;
            var decayed = Options.UtilizationDecay is not null;
            var bytes = ReadBack(() =>
            {
                var staged = 0L;
                Stage(_views.Blocks, ref staged);
                Stage(_views.Utilization, ref staged);
                Stage(_views.UtilizationSums, ref staged);
                if (decayed)
                {
                    Stage(_views.DecayedUtilization, ref staged);
                }

                Stage(_views.TokenCounts, ref staged);
                Stage(_views.VarianceHistory, ref staged);
                Stage(_views.Control, ref staged);
                Stage(_views.WindowLoad, ref staged);
                ringCopy?.View.CopyFrom(Stream, _views.WindowRing);
                return staged;
            });

            var read = 0L;
            var entries = (long)Options.Layers * Options.Experts;
            var blocks = Unstage<RoutingStateBlock>(bytes, Options.Layers, ref read);
            var utilization = Unstage<float>(bytes, entries, ref read);
            var sums = Unstage<double>(bytes, entries, ref read);
            var decayedUtilization = decayed ? Unstage<double>(bytes, entries, ref read) : [];
            var counts = Unstage<ulong>(bytes, entries, ref read);
            var history = Unstage<float>(bytes, _views.VarianceHistory.Length, ref read);
            var control = Unstage<int>(bytes, ModelStateLayout.ControlLength, ref read);
            var load = Unstage<ulong>(bytes, _views.WindowLoad.Length, ref read);

            // The ring's own copy back, the stream drained by the first: before the window wraps only the rows of
            // its steps (as the managed engine exports them), up to Array.MaxLength counts, past what one byte array holds.
            uint[]? ring = null;
            if (ringCopy is not null)
            {
                var windowSteps = WindowSteps(blocks[0].TotalRoutings);
                ring = new uint[windowSteps < Options.Window ? windowSteps * entries : ringCopy.Length];
                _reader.ToHost(ringCopy.View.SubView(0, ring.LongLength), ring);
            }

            return StateOf(blocks, utilization, sums, decayedUtilization, counts, history, control, load, ring);
        }
    }

    /// <summary>
    /// A model's state from its arrays copied back, each layer's per-expert values <c>Experts</c> apart
    /// (none before the first step); <paramref name="control"/> gives the ring's position.
    /// </summary>
    private ModelState StateOf(
        RoutingStateBlock[] blocks, float[] utilization, double[] sums, double[] decayed, ulong[] counts, float[] history, int[] control, ulong[] load, uint[]? ring)
    {
        var steps = blocks[0].TotalRoutings;
        var experts = steps == 0 ? 0 : Options.Experts;
        var layers = new RoutingState[Options.Layers];
        for (var l = 0; l < layers.Length; l++)
        {
            var row = (l * Options.Experts)..((l * Options.Experts) + experts);
            layers[l] = DeviceStateReader.StateOf(
                blocks[l],
                utilization[row],
                sums[row],
                decayed.Length == 0 ? [] : decayed[row],
                counts[row],
                history.AsSpan(l * VarianceWindow, VarianceWindow));
        }

        return new ModelState
        {
            Steps = steps,
            WindowSteps = WindowSteps(steps),
            WindowPosition = control[ModelStateLayout.WindowPosition],
            Layers = layers,
            WindowLoad = load,
            WindowRing = ring,
        };
    }
}
