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
        PlotImage.Save(path, () => Render(stats, timeline));
    }

    private static SKImage Render(ModelRoutingStats stats, BalanceTimeline? timeline)
    {
        var (load, balance) = Build(stats, timeline);
        return balance is null ? PlotImage.Render(load, Width, Height) : PlotImage.Stack(load, balance, Width, Height, 0.6);
    }

    /// <summary>The picture's plots: the heat map, and the balancedness panel where <paramref name="timeline"/> has more than one column (null else).</summary>
    internal static (Plot Load, Plot? Balance) Build(ModelRoutingStats stats, BalanceTimeline? timeline)
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
            for (var e = 0; e < experts; e++)
            {
                // A layer without load has no shares: drawn apart (grey), not as experts of 0 %.
                shares[l, e] = total == 0 ? double.NaN : 100.0 * counts[e] / total;
            }
        }

        var load = new Plot();
        var (loadRows, loadColumns) = Heatmap(load, shares, new ScottPlot.Colormaps.Inferno(), "% of the layer's slots", largest: true);
        // Two lines: a merge's step count and the grey cells' key made one line wider than the picture.
        load.Title(
            $"expert load since the start: each expert's share of its layer's token-expert slots, %\n"
            + $"{Counted.Of(layers, "layer")} × {Counted.Of(experts, "expert")}, {Counted.Of(steps, "step")}{(stats.MergedParts > 1 ? $" summed over {stats.MergedParts:N0} merged snapshots" : "")}; an even split is {100.0 / experts:0.###} %{NoLoad(shares)}");
        Label(load, "expert" + Block(loadColumns, "largest"), "layer" + Block(loadRows, "largest"));

        if (timeline is not { Filled: > 1 })
        {
            return (load, null);
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

        // From 0, so that dark is always the worst a layer can be, up to a round top over the largest value
        // drawn: a fixed 0 to 1 left a model of balancedness 0.04 to 0.1 (DeepSeek-V3's at decode) one colour.
        var top = BalanceScaleTop(values);
        var (balanceRows, balanceColumns) = Heatmap(balance, values, new ScottPlot.Colormaps.Viridis(), top < 1 ? $"balancedness (1 = even; colours to {top:0.#####})" : "balancedness (1 = even)", largest: false, scale: new ScottPlot.Range(0, top));
        balance.Title(BalanceTitle(timeline, columns, NoLoad(values)));
        Label(balance, (timeline.StepsPerColumn == 1 ? "step" : $"steps ÷ {timeline.StepsPerColumn:N0}") + Block(balanceColumns, "smallest"), "layer" + Block(balanceRows, "smallest"));

        return (load, balance);
    }

    /// <summary>
    /// The balancedness panel's title: its columns, and the steps left out, which are not drawn, so that an axis that
    /// counts the steps recorded from 0 is not read as the trace's (<paramref name="noLoad"/>: the note on columns without load).
    /// </summary>
    internal static string BalanceTitle(BalanceTimeline timeline, int columns, string noLoad)
    {
        var recorded = (timeline.SkipsEmptySteps ? " recorded, padding alone left out" : "")
            + (timeline.StepsSkipped > 0 ? $", from the trace's step {timeline.StepsSkipped:N0} (--skip-steps)" : "");
        return timeline.StepsPerColumn == 1
            ? $"balancedness per layer and step: mean over max expert load\n{columns:N0} steps{recorded}{noLoad}"
            : $"balancedness per layer over the steps: mean over max expert load\neach column {timeline.StepsPerColumn:N0} steps{recorded}, {columns:N0} columns{noLoad}";
    }

    /// <summary>
    /// The top of the balancedness colours: the largest value drawn rounded up to one significant digit
    /// (0.0912 gives 0.1, 0.37 gives 0.4), at most 1; 1 where no value has load.
    /// </summary>
    internal static double BalanceScaleTop(double[,] values)
    {
        var largest = values.Cast<double>().Where(v => !double.IsNaN(v)).DefaultIfEmpty(1).Max();
        if (largest <= 0)
        {
            return 1;
        }

        var unit = Math.Pow(10, Math.Floor(Math.Log10(largest)));
        return Math.Min(1, Math.Round(Math.Ceiling(Math.Round(largest / unit, 9)) * unit, 12));
    }

    /// <summary>
    /// <paramref name="values"/> (<c>[layers, columns]</c>) as a heat map with its color bar: a cell per
    /// value, centred on whole coordinates, layer 0 at the top as a matrix is read; a NaN value (no
    /// load) grey. Beyond
    /// <see cref="MaxRows"/> × <see cref="MaxColumns"/> a cell shows a block of values by its largest
    /// (or smallest) one, as the single-layer bars show the busiest expert of a group: drawing every
    /// value would leave most of them out of the pixels, a hot expert or a bad layer with them.
    /// </summary>
    /// <param name="plot">The plot drawn into.</param>
    /// <param name="values">The values, <c>[layers, columns]</c>.</param>
    /// <param name="colormap">The colours of the values.</param>
    /// <param name="label">The color bar's label.</param>
    /// <param name="largest">Whether a cell of a block shows its largest value (a load's hot expert) or its smallest.</param>
    /// <param name="scale">The values the colours span; null for the values drawn.</param>
    /// <returns>The values each cell holds down and across (1 and 1 when every value has its cell).</returns>
    private static (int Rows, int Columns) Heatmap(Plot plot, double[,] values, IColormap colormap, string label, bool largest, ScottPlot.Range? scale = null)
    {
        var (rows, columns) = (values.GetLength(0), values.GetLength(1));
        var (rowBlock, columnBlock) = ((rows + MaxRows - 1) / MaxRows, (columns + MaxColumns - 1) / MaxColumns);
        var cells = Reduce(values, rowBlock, columnBlock, largest);
        var (cellRows, cellColumns) = (cells.GetLength(0), cells.GetLength(1));

        // Each cell a block wide and high, the first centred on 0, in the values' own coordinates.
        var area = new CoordinateRect(-0.5, (cellColumns * columnBlock) - 0.5, -0.5, (cellRows * rowBlock) - 0.5);
        var (low, high) = Span(values);
        if (double.IsNaN(low))
        {
            // No cell has load: one grey area, as a NaN cell is drawn (the heat map cannot measure NaN alone).
            var none = plot.Add.Rectangle(area);
            none.FillColor = Colors.Gray;
            none.LineWidth = 0;
        }
        else
        {
            // The colours span the values drawn, NaN cells (no load) apart; one value alone (a perfectly
            // even model) sits in the middle of 0 to twice it, the same colour at any expert count, as a
            // bar of zero span has no ticks. The range is set first: every later setter measures it.
            var map = plot.Add.Heatmap(AtLeastTwoByTwo(cells));
            var range = scale
                ?? (low == high
                    ? new ScottPlot.Range(0, high > 0 ? 2 * high : 1)
                    : new ScottPlot.Range(low, high));
            map.ManualRange = range;
            map.NaNCellColor = Colors.Gray;
            map.Colormap = colormap;
            map.Rectangle = area;
            var bar = plot.Add.ColorBar(map);
            bar.Label = label;
            bar.Axis.TickGenerator = ColorBarTicks(range);
        }

        // A last block of fewer values keeps its whole cell (the axes run a little past the last value), or
        // a hot expert there would be a sliver; the vertical axis runs down, so that layer 0 is on top.
        plot.Axes.SetLimits(area.Left, area.Right, area.Top, area.Bottom);
        return (rowBlock, columnBlock);
    }

    /// <summary>
    /// <paramref name="cells"/>, each row or column doubled where there is only one: ScottPlot's heat
    /// map gives a lone row or column no height or width and draws nothing (5.1.59), while two equal
    /// halves fill the same rectangle with the same colour.
    /// </summary>
    private static double[,] AtLeastTwoByTwo(double[,] cells)
    {
        var (rows, columns) = (cells.GetLength(0), cells.GetLength(1));
        if (rows > 1 && columns > 1)
        {
            return cells;
        }

        var (rowCopies, columnCopies) = (rows == 1 ? 2 : 1, columns == 1 ? 2 : 1);
        var doubled = new double[rows * rowCopies, columns * columnCopies];
        for (var r = 0; r < doubled.GetLength(0); r++)
        {
            for (var c = 0; c < doubled.GetLength(1); c++)
            {
                doubled[r, c] = cells[r / rowCopies, c / columnCopies];
            }
        }

        return doubled;
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

    /// <summary>
    /// About five ticks at a round step (1, 2, 2.5 or 5 times a power of ten) across
    /// <paramref name="range"/>, each with as many decimals as the step needs: the same ticks whatever
    /// the bar's height, so that the layout, which sizes the bar from ticks made for another height,
    /// leaves room for them and the bar's title clears them. A span too narrow for distinct labels
    /// (under a billionth of its values, or a step under 10^−15) gets one tick in its middle.
    /// </summary>
    internal static ScottPlot.TickGenerators.NumericManual ColorBarTicks(ScottPlot.Range range)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        var span = range.Max - range.Min;
        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(span / 5)));
        var factor = new[] { 1, 2, 2.5, 5, 10 }.MinBy(factor => Math.Abs((span / (factor * magnitude)) - 4));
        var step = factor * magnitude;
        var decimals = Math.Max(0, -(int)Math.Floor(Math.Log10(step) + 1e-9) + (factor == 2.5 ? 1 : 0));
        if (!(span > Math.Max(Math.Abs(range.Min), Math.Abs(range.Max)) * 1e-9) || decimals > 15)
        {
            var middle = (range.Min + range.Max) / 2;
            ticks.AddMajor(middle, middle.ToString("G6", System.Globalization.CultureInfo.InvariantCulture));
            return ticks;
        }

        var first = Math.Ceiling((range.Min / step) - 1e-9);
        for (var i = 0; (first + i) * step <= range.Max + (step * 1e-9); i++)
        {
            // Rounded to its label, so that the last tick is not a hair past the range and left out;
            // + 0.0 turns −0 into 0, so that no tick reads "-0".
            var value = Math.Round((first + i) * step, decimals) + 0.0;
            var format = Math.Abs(value) >= 1e6 ? "G6" : $"F{decimals}";
            ticks.AddMajor(value, value.ToString(format, System.Globalization.CultureInfo.InvariantCulture));
        }

        return ticks;
    }

    /// <summary>The title's note when a map has cells without load (NaN): "; grey: no load", else empty.</summary>
    private static string NoLoad(double[,] values)
    {
        foreach (var value in values)
        {
            if (double.IsNaN(value))
            {
                return "; grey: no load";
            }
        }

        return "";
    }

    /// <summary>The smallest and largest of <paramref name="values"/> that are not NaN; NaN and NaN when all are.</summary>
    private static (double Low, double High) Span(double[,] values)
    {
        var (low, high) = (double.NaN, double.NaN);
        foreach (var value in values)
        {
            if (!double.IsNaN(value))
            {
                (low, high) = double.IsNaN(low) ? (value, value) : (Math.Min(low, value), Math.Max(high, value));
            }
        }

        return (low, high);
    }

    /// <summary>An axis label's note on what a cell shows when it holds a block of values ("(a cell: the largest of 7)"); empty when each value has its cell.</summary>
    private static string Block(int values, string pick) => values == 1 ? "" : $" (a cell: the {pick} of {values:N0})";

    private static void Label(Plot plot, string x, string y)
    {
        plot.XLabel(x);
        plot.YLabel(y);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };

        // Layers, experts and steps are whole: no minor ticks between them.
        plot.Axes.Bottom.MinorTickStyle.Length = 0;
        plot.Axes.Left.MinorTickStyle.Length = 0;
    }
}
