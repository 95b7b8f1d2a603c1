using ILGPU;
using ILGPU.Runtime;
using MoeGpuStats.Kernels;

namespace MoeGpuStats.Tests.Kernels;

/// <summary>
/// The query kernel on states written straight into device memory, including values no record
/// produces (NaN, infinities, negative zero, ties) and a variance ring that wraps: every result
/// equals the managed engine's <c>RoutingMath</c> to the bit.
/// </summary>
public sealed class UtilizationQueryKernelTests
{
    public static TheoryData<string> Accelerators => [.. TestAccelerators.Kinds, TestAccelerators.CpuWithWarpsOf32];

    public static IEnumerable<(string Name, float[] Utilization)> UtilizationCases()
    {
        var random = new Random(3);
        yield return ("4,096 random", [.. Enumerable.Range(0, RoutingStateLayout.MaxExperts).Select(_ => (float)random.NextDouble())]);
        yield return ("1,000 with ties", [.. Enumerable.Range(0, 1000).Select(i => (i * 37 % 11) / 10f)]);
        yield return ("one expert", [0.25f]);
        yield return ("13 with NaN first", [float.NaN, 0.5f, -0f, 0f, 0.5f, 0.1f, float.PositiveInfinity, 0.1f, 0.3f, 0f, -0f, 0.2f, 0.5f]);
        yield return ("9 with NaN later", [0.5f, 0.25f, float.NaN, 0.75f, 0f, 0.75f, 0f, 0.1f, 0.2f]);
        yield return ("all zero", [0f, 0f, 0f, 0f, 0f]);
        yield return ("negative mean", [-1f, 0.5f, -0.25f]);
    }

    [Theory]
    [MemberData(nameof(Accelerators))]
    public void UtilizationFiguresEqualTheManagedEngines(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var query = UtilizationQueryKernel.Create(device);
        foreach (var (name, values) in UtilizationCases())
        {
            using var state = new StateBuffers(device, values, [], head: 0);
            var result = state.Run(query, trendWindow: 0);

            AssertBits(RoutingMath.Mean(values), result.Mean, name, "mean");
            AssertBits(RoutingMath.CoefficientOfVariation(values), result.CoefficientOfVariation, name, "cv");
            AssertBits(RoutingMath.Min(values), result.Min, name, "min");
            AssertBits(RoutingMath.Max(values), result.Max, name, "max");
            var most = RoutingMath.IndexOfLastMax(values);
            var least = RoutingMath.IndexOfFirstMin(values);
            Assert.True(most == result.MostUtilized, $"{name}: most utilized {result.MostUtilized}, managed {most}");
            Assert.True(least == result.LeastUtilized, $"{name}: least utilized {result.LeastUtilized}, managed {least}");
            AssertBits(values[most], result.MostUtilization, name, "most utilization");
            AssertBits(values[least], result.LeastUtilization, name, "least utilization");
        }
    }

    [Theory]
    [MemberData(nameof(Accelerators))]
    public void TrendEqualsTheManagedEnginesOverAWrappedRing(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var query = UtilizationQueryKernel.Create(device);
        var random = new Random(8);
        foreach (var (head, count) in new[] { (371, 1000), (990, 20), (0, 1000), (0, 1), (0, 0), (999, 1000) })
        {
            var history = Enumerable.Range(0, count).Select(i => 50f + i * 0.01f + (float)random.NextDouble()).ToArray();
            using var state = new StateBuffers(device, [0.5f, 0.5f], history, head);
            foreach (var window in new[] { 0, 1, 2, 7, 8, 100, 999, 1000, 5000 })
            {
                var expected = RoutingMath.Trend(history.AsSpan(Math.Max(0, count - window)), []);
                AssertBits(expected, state.Run(query, window).Trend, $"head {head}, count {count}", $"trend({window})");
            }
        }
    }

    [Theory]
    [MemberData(nameof(Accelerators))]
    public void NoExpertsGivesZeros(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        using var state = new StateBuffers(device, [], [], head: 0);
        Assert.Equal(default, state.Run(UtilizationQueryKernel.Create(device), trendWindow: 100));
    }

    /// <summary>A block that claims more experts or variances than the arrays hold (not one the record kernel writes) reads only what fits.</summary>
    [Theory]
    [MemberData(nameof(Accelerators))]
    public void AnOutOfRangeBlockIsClampedToTheArrays(string accelerator)
    {
        var device = TestAccelerators.Require(accelerator);
        var values = Enumerable.Range(0, RoutingStateLayout.MaxExperts).Select(i => i % 7 / 7f).ToArray();
        var history = Enumerable.Range(0, RoutingStateLayout.VarianceWindow).Select(i => i * 0.5f).ToArray();
        using var state = new StateBuffers(device, values, history, head: 0, blockExperts: RoutingStateLayout.MaxExperts + 500, blockVariances: 5000);

        var result = state.Run(UtilizationQueryKernel.Create(device), trendWindow: 5000);

        AssertBits(RoutingMath.Mean(values), result.Mean, "clamped", "mean");
        AssertBits(RoutingMath.Trend(history, []), result.Trend, "clamped", "trend");

        // A ring position before the ring reads from its first slot instead of before it.
        using var negativeHead = new StateBuffers(device, values, history, head: 0, blockHead: -300);
        AssertBits(RoutingMath.Trend(history, []), negativeHead.Run(UtilizationQueryKernel.Create(device), trendWindow: 1000).Trend, "head -300", "trend");
        var error = Assert.Throws<ArgumentException>(() => UtilizationQueryKernel.Create(device)(device.DefaultStream, default, 0, default));
        Assert.Equal("result", error.ParamName);
    }

    /// <summary>
    /// Equal to the bit, except that any NaN equals any NaN: a GPU's arithmetic returns its canonical
    /// NaN (0x7FFFFFFF on NVIDIA) where x86 passes the input's on (.NET's NaN is 0xFFC00000).
    /// </summary>
    private static void AssertBits(float expected, float actual, string name, string figure) =>
        Assert.True(
            BitConverter.SingleToInt32Bits(expected) == BitConverter.SingleToInt32Bits(actual) || (float.IsNaN(expected) && float.IsNaN(actual)),
            $"{name}: {figure} {actual:R} (0x{BitConverter.SingleToInt32Bits(actual):X8}), managed {expected:R} (0x{BitConverter.SingleToInt32Bits(expected):X8})");

    /// <summary>A routing state written directly: the utilization, and the variances oldest first from ring slot <c>head</c>.</summary>
    private sealed class StateBuffers : IDisposable
    {
        private readonly Accelerator _device;
        private readonly List<MemoryBuffer> _buffers = [];
        private readonly RoutingStateViews _views;
        private readonly MemoryBuffer1D<UtilizationQueryResult, Stride1D.Dense> _result;

        public StateBuffers(Accelerator device, float[] utilization, float[] history, int head, int? blockExperts = null, int? blockVariances = null, int? blockHead = null)
        {
            _device = device;
            var ring = new float[RoutingStateLayout.VarianceWindow];
            for (var i = 0; i < history.Length; i++)
            {
                ring[(head + i) % ring.Length] = history[i];
            }

            var block = new RoutingStateBlock { Experts = blockExperts ?? utilization.Length, VarianceHead = blockHead ?? head, VarianceCount = blockVariances ?? history.Length };
            _views = new RoutingStateViews
            {
                State = Keep(device.Allocate1D([block])).View,
                BatchHistogram = Keep(device.Allocate1D<ulong>(1)).View,
                BatchInvalid = Keep(device.Allocate1D<ulong>(1)).View,
                BatchPaddedTokens = Keep(device.Allocate1D<ulong>(1)).View,
                UtilizationSums = Keep(device.Allocate1D<double>(1)).View,
                TokenCounts = Keep(device.Allocate1D<ulong>(1)).View,
                Utilization = Keep(device.Allocate1D(utilization.Length == 0 ? [float.NaN] : utilization)).View,
                DecayedUtilization = Keep(device.Allocate1D<double>(1)).View,
                VarianceHistory = Keep(device.Allocate1D(ring)).View,
            };
            _result = Keep(device.Allocate1D<UtilizationQueryResult>(1));
        }

        public UtilizationQueryResult Run(UtilizationQueryLauncher query, int trendWindow)
        {
            // A field the kernel leaves unwritten keeps these and fails the comparison.
            _result.View.CopyFromCPU([new UtilizationQueryResult
            {
                Mean = -7f, Min = -7f, Max = -7f, CoefficientOfVariation = -7f, MostUtilized = -7, LeastUtilized = -7,
                MostUtilization = -7f, LeastUtilization = -7f, Trend = -7f,
            }]);
            query(_device.DefaultStream, _views, trendWindow, _result.View);
            return _result.GetAsArray1D()[0];
        }

        public void Dispose() => _buffers.ForEach(buffer => buffer.Dispose());

        private T Keep<T>(T buffer)
            where T : MemoryBuffer
        {
            _buffers.Add(buffer);
            return buffer;
        }
    }
}
