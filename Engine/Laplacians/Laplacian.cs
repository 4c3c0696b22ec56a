using System.Numerics;

namespace TauCluster.Engine;

/// <summary>
/// A feature-space graph Laplacian L (D×D, sparse, symmetric) in compressed sparse row form.
/// Immutable once built, so one copy is shared by every session that scores against it.
/// </summary>
public sealed class Laplacian
{
    private const double SymmetryTolerance = 1e-6;

    private readonly int[] rowStart;
    private readonly int[] columns;
    private readonly double[] values;

    private Laplacian(string name, int dimension, int[] rowStart, int[] columns, double[] values, TaumodeKind? defaultTaumode)
    {
        Name = name;
        Dimension = dimension;
        this.rowStart = rowStart;
        this.columns = columns;
        this.values = values;
        DefaultTaumode = defaultTaumode;
    }

    public string Name { get; }
    public int Dimension { get; }
    public int NonZeros => values.Length;

    /// <summary>The domain's own τ mode (arrowspace's synthesis TauMode); null for built-in Laplacians.</summary>
    public TaumodeKind? DefaultTaumode { get; }

    /// <summary>The path graph on D features: L[i][i] = degree, L[i][i±1] = −1.</summary>
    public static Laplacian Chain(int dimension)
    {
        if (dimension < 1) throw new LaplacianException($"chain Laplacian dimension {dimension} must be positive");
        var rows = new List<long>(); var cols = new List<long>(); var vals = new List<double>();
        for (int i = 0; i < dimension; i++)
        {
            int degree = (i > 0 ? 1 : 0) + (i + 1 < dimension ? 1 : 0);
            if (i > 0) { rows.Add(i); cols.Add(i - 1); vals.Add(-1); }
            rows.Add(i); cols.Add(i); vals.Add(degree);
            if (i + 1 < dimension) { rows.Add(i); cols.Add(i + 1); vals.Add(-1); }
        }
        return FromTriplets("chain", dimension, dimension, rows.ToArray(), cols.ToArray(), vals.ToArray(), null);
    }

    /// <summary>
    /// Builds from COO triplets (duplicates add up, as in COO). Rejects non-square shapes, out-of-range
    /// indices, non-finite values and asymmetry beyond 1e-6 relative.
    /// </summary>
    public static Laplacian FromTriplets(string name, long rows, long cols, ReadOnlySpan<long> row, ReadOnlySpan<long> col, ReadOnlySpan<double> value, TaumodeKind? defaultTaumode)
    {
        if (rows != cols) throw new LaplacianException($"Laplacian {name} is not square ({rows}×{cols})");
        if (rows < 1 || rows > 1 << 20) throw new LaplacianException($"Laplacian {name} has an invalid dimension {rows}");
        if (row.Length != col.Length || row.Length != value.Length)
            throw new LaplacianException($"Laplacian {name}: row, col and value columns differ in length ({row.Length}, {col.Length}, {value.Length})");
        int n = (int)rows;
        var entries = new Dictionary<(int, int), double>(row.Length);
        for (int i = 0; i < row.Length; i++)
        {
            if ((ulong)row[i] >= (ulong)n || (ulong)col[i] >= (ulong)n)
                throw new LaplacianException($"Laplacian {name}: entry ({row[i]}, {col[i]}) lies outside {n}×{n}");
            if (!double.IsFinite(value[i]))
                throw new LaplacianException($"Laplacian {name}: entry ({row[i]}, {col[i]}) is not finite ({value[i]})");
            var key = ((int)row[i], (int)col[i]);
            entries[key] = entries.GetValueOrDefault(key) + value[i];
        }

        foreach (var ((i, j), v) in entries)
        {
            if (j <= i) continue;
            double w = entries.GetValueOrDefault((j, i));
            double scale = Math.Max(Math.Abs(v), Math.Abs(w));
            if (Math.Abs(v - w) > SymmetryTolerance * scale)
                throw new LaplacianException($"Laplacian {name} is not symmetric: L[{i}][{j}] = {v} but L[{j}][{i}] = {w}");
        }
        foreach (var ((i, j), v) in entries)
        {
            if (j < i && !entries.ContainsKey((j, i)) && v != 0)
                throw new LaplacianException($"Laplacian {name} is not symmetric: L[{i}][{j}] = {v} but L[{j}][{i}] = 0");
        }

        var ordered = entries.Where(e => e.Value != 0).OrderBy(e => e.Key.Item1).ThenBy(e => e.Key.Item2).ToArray();
        var rowStart = new int[n + 1];
        var columns = new int[ordered.Length];
        var values = new double[ordered.Length];
        for (int k = 0; k < ordered.Length; k++)
        {
            rowStart[ordered[k].Key.Item1 + 1]++;
            columns[k] = ordered[k].Key.Item2;
            values[k] = ordered[k].Value;
        }
        for (int i = 0; i < n; i++) rowStart[i + 1] += rowStart[i];
        return new Laplacian(name, n, rowStart, columns, values, defaultTaumode);
    }

    /// <summary>The compressed sparse rows themselves, for kernels that take them to a device.</summary>
    internal (int[] RowStarts, int[] Columns, double[] Values) Csr => (rowStart, columns, values);

    /// <summary>xᵀ L x in double precision, O(nnz).</summary>
    public double QuadraticForm(ReadOnlySpan<float> x) => QuadraticForm<float>(x);

    /// <inheritdoc cref="QuadraticForm(ReadOnlySpan{float})"/>
    public double QuadraticForm<T>(ReadOnlySpan<T> x) where T : IFloatingPointIeee754<T> => MultiplyAndQuadraticForm(x, []);

    /// <summary>
    /// xᵀLx in double, summed row by row; where <paramref name="lx"/> is not empty it also receives L·x, each row summed in
    /// double and then rounded to T (what the λ gradient needs), without changing the bits of xᵀLx.
    /// </summary>
    public double MultiplyAndQuadraticForm<T>(ReadOnlySpan<T> x, Span<T> lx) where T : IFloatingPointIeee754<T>
    {
        if (x.Length != Dimension) throw new LaplacianException($"vector of length {x.Length} against Laplacian {Name} of dimension {Dimension}");
        bool multiply = !lx.IsEmpty;
        double total = 0;
        for (int i = 0; i < Dimension; i++)
        {
            double rowDot = 0;
            for (int k = rowStart[i]; k < rowStart[i + 1]; k++) rowDot += values[k] * double.CreateTruncating(x[columns[k]]);
            if (multiply) lx[i] = T.CreateTruncating(rowDot);
            total += double.CreateTruncating(x[i]) * rowDot;
        }
        return total;
    }

    /// <summary>The stored entries in row-major order.</summary>
    public IEnumerable<(int Row, int Column, double Value)> Entries()
    {
        for (int i = 0; i < Dimension; i++)
            for (int k = rowStart[i]; k < rowStart[i + 1]; k++)
                yield return (i, columns[k], values[k]);
    }

    /// <summary>L as a dense row-major D×D matrix, for the dense eigen solver.</summary>
    public double[] ToDense()
    {
        var dense = new double[(long)Dimension * Dimension];
        foreach (var (i, j, v) in Entries()) dense[(long)i * Dimension + j] = v;
        return dense;
    }

    /// <summary>
    /// The connected components of the graph whose edges are the non-zero off-diagonal entries, counted by
    /// union–find; an isolated feature is a component of its own. Each is one zero eigenvalue of L.
    /// </summary>
    public int ConnectedComponents()
    {
        var parent = Enumerable.Range(0, Dimension).ToArray();
        int Root(int i)
        {
            while (parent[i] != i) i = parent[i] = parent[parent[i]];
            return i;
        }
        int components = Dimension;
        foreach (var (i, j, _) in Entries())
        {
            if (i == j) continue;
            int a = Root(i), b = Root(j);
            if (a == b) continue;
            parent[Math.Max(a, b)] = Math.Min(a, b);
            components--;
        }
        return components;
    }

    /// <summary>The entry L[i][j] (0 where not stored).</summary>
    public double this[int i, int j]
    {
        get
        {
            int k = Array.BinarySearch(columns, rowStart[i], rowStart[i + 1] - rowStart[i], j);
            return k >= 0 ? values[k] : 0.0;
        }
    }

    /// <summary>Refuses a Laplacian of another dimension than λ is taken in: the head's, or a projection's.</summary>
    public void RequireDimension(int dimension, string purpose)
    {
        if (Dimension != dimension)
            throw new LaplacianException($"Laplacian {Name} has dimension {Dimension} but {purpose} takes λ in {dimension} dimensions");
    }

    public (double Min, double Max) DiagonalRange()
    {
        double min = double.MaxValue, max = double.MinValue;
        for (int i = 0; i < Dimension; i++) { double d = this[i, i]; min = Math.Min(min, d); max = Math.Max(max, d); }
        return (min, max);
    }
}
