using System.Runtime.InteropServices;

namespace MoeGpuStats.Native;

/// <summary>
/// The C struct <c>moegs_model_balance</c>; field order and types match include/moegs.h (documented
/// there). libmoegs refuses to start when its size differs from the header's, as for the snapshot,
/// and NativeApiTests (NativeApiTests.Model.cs) compares the layout with the header's field by field.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public struct NativeModelBalance
{
    public ulong Steps;
    public double WindowMinBalancedness;
    public double WindowP10Balancedness;
    public double WindowMedianBalancedness;
    public double WindowMeanBalancedness;
    public double WindowTokenWeightedBalancedness;
    public double SinceStartMinBalancedness;
    public double SinceStartP10Balancedness;
    public double SinceStartMedianBalancedness;
    public double SinceStartMeanBalancedness;
    public double SinceStartTokenWeightedBalancedness;
    public int WindowSteps;
    public int WindowWorstLayer;
    public int SinceStartWorstLayer;
    public int Entries;
    public double WindowMaxBalancedness;
    public double SinceStartMaxBalancedness;
    public int WindowBestLayer;
    public int SinceStartBestLayer;

    /// <summary>The C struct of <paramref name="summary"/>, whose per-layer balance is over <paramref name="entries"/> experts or ranks.</summary>
    internal static NativeModelBalance From(ModelRoutingSummary summary, int entries) => new()
    {
        Steps = summary.Steps,
        WindowMinBalancedness = summary.Window.MinBalancedness,
        WindowP10Balancedness = summary.Window.P10Balancedness,
        WindowMedianBalancedness = summary.Window.MedianBalancedness,
        WindowMeanBalancedness = summary.Window.MeanBalancedness,
        WindowTokenWeightedBalancedness = summary.Window.TokenWeightedBalancedness,
        SinceStartMinBalancedness = summary.SinceStart.MinBalancedness,
        SinceStartP10Balancedness = summary.SinceStart.P10Balancedness,
        SinceStartMedianBalancedness = summary.SinceStart.MedianBalancedness,
        SinceStartMeanBalancedness = summary.SinceStart.MeanBalancedness,
        SinceStartTokenWeightedBalancedness = summary.SinceStart.TokenWeightedBalancedness,
        WindowSteps = summary.WindowSteps,
        WindowWorstLayer = summary.Window.WorstLayer,
        SinceStartWorstLayer = summary.SinceStart.WorstLayer,
        Entries = entries,
        WindowMaxBalancedness = summary.Window.MaxBalancedness,
        SinceStartMaxBalancedness = summary.SinceStart.MaxBalancedness,
        WindowBestLayer = summary.Window.BestLayer,
        SinceStartBestLayer = summary.SinceStart.BestLayer,
    };
}

/// <summary>The C struct <c>moegs_layer_balance</c>: one layer's <see cref="LayerBalance"/>, field for field as include/moegs.h declares it.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct NativeLayerBalance
{
    public ulong Load;
    public double MeanLoad;
    public ulong MaxLoad;
    public ulong MinLoad;
    public double Balancedness;
    public double MaxMeanRatio;
    public double Cv;
    public int Hottest;
    public int Coldest;
    public int Dead;
    public double Gini;
    public double Top10Share;

    internal static NativeLayerBalance From(LayerBalance layer) => new()
    {
        Load = layer.Load,
        MeanLoad = layer.MeanLoad,
        MaxLoad = layer.MaxLoad,
        MinLoad = layer.MinLoad,
        Balancedness = layer.Balancedness,
        MaxMeanRatio = layer.MaxMeanRatio,
        Cv = layer.CoefficientOfVariation,
        Hottest = layer.HottestExpert,
        Coldest = layer.ColdestExpert,
        Dead = layer.DeadExperts,
        Gini = layer.GiniCoefficient,
        Top10Share = layer.Top10PercentShare,
    };
}
