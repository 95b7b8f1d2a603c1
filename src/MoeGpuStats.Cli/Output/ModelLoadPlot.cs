using ScottPlot;
using SkiaSharp;

namespace MoeGpuStats.Cli.Output;

/// <summary>
/// A whole model as one picture: a layers × experts heat map of each expert's share of its layer's
/// load since the start (top), and, for a replay of more than one step, each layer's balancedness
/// over the steps (bottom, <see cref="BalanceTimeline"/>).
/// </summary>
internal static class ModelLoadPlot
{
    public const int Width = 1400;
    public const int Height = 1000;

    /// <summary>The most cells a heat map draws across and down: fewer than its pixels, so that no cell is skipped when the picture is drawn.</summary>
    public const int MaxColumns = 600;

    /// <inheritdoc cref="MaxColumns"/>
    public const int MaxRows = 200;

    /// <summary>Writes the picture to <paramref name="path"/>, as PNG or JPEG by its extension, whole or not at all.</summary>
    /// <param name="stats">The model.</param>
    /// <param name="timeline">The replay's balancedness over the steps; null (a snapshot read back) draws the heat map alone.</param>
    /// <param name="path">The file.</param>
    /// <exception cref="ArgumentException">The extension is neither .png nor .jpg/.jpeg.</exception>
    public static void Save(ModelRoutingStats stats, BalanceTimeline? timeline, string path)
    {
        timeline?.Complete();
        PlotImage.Save(path, () => Render(stats, timeline is { Filled: > 1 } ? timeline : null));
    }

    private static SKImage Render(ModelRoutingStats stats, BalanceTimeline? timeline)
    {
        var (layers, experts) = (stats.Layers, stats.Experts);
        var shares = new double[layers, experts];
        ulong steps = 0;
        for (var l = 0; l < layers; l++)
        {
            using var layer = stats.Layer(l);
            steps = layer.TotalRoutings;
            var counts = layer.ExpertTokenCounts;
            var total = counts.Aggregate(0.0, (sum, count) => sum + count);
            for (var e = 0; e < counts.Count; e++)
            {
                shares[l, e] = total == 0 ? 0 : 100.0 * counts[e] / total;
            }
        }

        var load = new Plot();
        var (loadRows, loadColumns) = Heatmap(load, shares, new ScottPlot.Colormaps.Inferno(), "% of the layer's slots", largest: true);
        load.Title($"expert load: each expert's share of its layer's token-expert slots, % ({Counted.Of(layers, "layer")} × {Counted.Of(experts, "expert")}, {Counted.Of(steps, "step")}; an even split is {100.0 / experts:0.###} %)");
        Label(load, "expert" + Block(loadColumns, "largest"), "layer" + Block(loadRows, "largest"));

        if (timeline is null)
        {
            return PlotImage.Render(load, Width, Height);
        }

        var balance = new Plot();
        var columns = timeline.Filled;
        var values = new double[layers, columns];
        for (var l = 0; l < layers; l++)
        {
            for (var c = 0; c < columns; c++)
            {
                values[l, c] = timeline.Balancedness[l, c];
            }
        }

        var (balanceRows, balanceColumns) = Heatmap(balance, values, new ScottPlot.Colormaps.Viridis(), "balancedness (1 = even)", largest: false);
        var noLoad = values.Cast<double>().Any(double.IsNaN) ? "; grey: no load" : "";
        balance.Title(timeline.StepsPerColumn == 1
            ? $"balancedness per layer and step (mean over max expert load; {columns:N0} steps{noLoad})"
            : $"balancedness per layer over the steps (mean over max expert load; each column {timeline.StepsPerColumn:N0} steps, {columns:N0} columns{noLoad})");
        Label(balance, (timeline.StepsPerColumn == 1 ? "step" : $"steps ÷ {timeline.StepsPerColumn:N0}") + Block(balanceColumns, "smallest"), "layer" + Block(balanceRows, "smallest"));

        return PlotImage.Stack(load, balance, Width, Height, 0.6);
    }

    /// <summary>
    /// <paramref name="values"/> (<c>[layers, columns]</c>) as a heat map with its color bar: a cell per
    /// value, centred on whole coordinates, layer 0 at the top as a matrix is read; a NaN value (no
    /// load) grey. Beyond
    /// <see cref="MaxRows"/> × <see cref="MaxColumns"/> a cell shows a block of values by its largest
    /// (or smallest) one, as the single-layer bars show the busiest expert of a group: drawing every
    /// value would leave most of them out of the pixels, a hot expert or a bad layer with them.
    /// </summary>
    /// <returns>The values each cell holds down and across (1 and 1 when every value has its cell).</returns>
    private static (int Rows, int Columns) Heatmap(Plot plot, double[,] values, IColormap colormap, string label, bool largest)
    {
        var (rows, columns) = (values.GetLength(0), values.GetLength(1));
        var (rowBlock, columnBlock) = ((rows + MaxRows - 1) / MaxRows, (columns + MaxColumns - 1) / MaxColumns);
        var cells = Reduce(values, rowBlock, columnBlock, largest);
        var map = plot.Add.Heatmap(cells);
        map.Colormap = colormap;
        map.NaNCellColor = Colors.Gray;
        var drawn = values.Cast<double>().Where(v => !double.IsNaN(v)).DefaultIfEmpty(1).ToArray();
        var (low, high) = (drawn.Min(), drawn.Max());
        if (low == high)
        {
            // Every cell alike (a perfectly even model): a colour bar of zero span has no ticks, so give it one around the value.
            map.ManualRange = new ScottPlot.Range(Math.Min(0, low), Math.Max(high, 1));
        }

        // Each cell centred on the middle of its block, in the values' own coordinates.
        var (cellRows, cellColumns) = (cells.GetLength(0), cells.GetLength(1));
        map.Position = new CoordinateRect(
            (columnBlock - 1) / 2.0,
            ((cellColumns - 1) * columnBlock) + ((columnBlock - 1) / 2.0),
            (rowBlock - 1) / 2.0,
            ((cellRows - 1) * rowBlock) + ((rowBlock - 1) / 2.0));
        var bar = plot.Add.ColorBar(map);
        bar.Label = label;

        // The layout sizes the bar from ticks generated for another height: labels of one width at any
        // tick spacing keep the bar's title clear of them.
        var span = Math.Max(high, 1) - Math.Min(0, low);
        var format = span <= 2 ? "0.00" : span <= 20 ? "0.0" : "0";
        bar.Axis.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
        {
            LabelFormatter = value => value.ToString(format, System.Globalization.CultureInfo.InvariantCulture),
        };

        // A last block of fewer values keeps its whole cell (the axes run a little past the last value), or a hot expert there would be a sliver.
        plot.Axes.SetLimits(-0.5, (cellColumns * columnBlock) - 0.5, (cellRows * rowBlock) - 0.5, -0.5);
        return (rowBlock, columnBlock);
    }

    /// <summary>Blocks of <paramref name="rowBlock"/> × <paramref name="columnBlock"/> values, each by its largest (or smallest) value, NaN only when all of its values are; the last blocks may be partial.</summary>
    internal static double[,] Reduce(double[,] values, int rowBlock, int columnBlock, bool largest)
    {
        if (rowBlock == 1 && columnBlock == 1)
        {
            return values;
        }

        var (rows, columns) = (values.GetLength(0), values.GetLength(1));
        var cells = new double[(rows + rowBlock - 1) / rowBlock, (columns + columnBlock - 1) / columnBlock];
        for (var r = 0; r < cells.GetLength(0); r++)
        {
            for (var c = 0; c < cells.GetLength(1); c++)
            {
                var pick = double.NaN;
                for (var row = r * rowBlock; row < Math.Min(rows, (r + 1) * rowBlock); row++)
                {
                    for (var column = c * columnBlock; column < Math.Min(columns, (c + 1) * columnBlock); column++)
                    {
                        var value = values[row, column];
                        if (double.IsNaN(pick) || (largest ? value > pick : value < pick))
                        {
                            pick = value;
                        }
                    }
                }

                cells[r, c] = pick;
            }
        }

        return cells;
    }

    /// <summary>An axis label's note on what a cell shows when it holds a block of values ("(a cell: the largest of 7)"); empty when each value has its cell.</summary>
    private static string Block(int values, string pick) => values == 1 ? "" : $" (a cell: the {pick} of {values:N0})";

    private static void Label(Plot plot, string x, string y)
    {
        plot.XLabel(x);
        plot.YLabel(y);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
    }
}
