using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>
/// The eigen-decomposition of a dense real symmetric matrix, in double: eigenvalues ascending and, when asked for,
/// orthonormal eigenvectors. Householder reduction to tridiagonal form, then implicit symmetric QR steps with
/// Wilkinson shifts (Golub &amp; Van Loan, Matrix Computations, §8.3): O(n³) for the reduction, O(n²) for the
/// eigenvalues of the tridiagonal matrix, backward stable, so eigenvalues are accurate to about ε·‖A‖ —
/// which is what telling a Laplacian's zero eigenvalues (its connected components) from small positive ones needs.
/// Sized for feature-space Laplacians: a D×D matrix with D up to a few thousand.
/// </summary>
public sealed class SymmetricEigen
{
    private readonly double[]? vectors;   // row j is the unit eigenvector of Values[j]

    private SymmetricEigen(int dimension, double[] values, double[]? vectors)
    {
        Dimension = dimension;
        Values = values;
        this.vectors = vectors;
    }

    public int Dimension { get; }

    /// <summary>The eigenvalues in ascending order.</summary>
    public double[] Values { get; }

    public bool HasVectors => vectors is not null;

    /// <summary>The unit eigenvector of <see cref="Values"/>[<paramref name="index"/>].</summary>
    public ReadOnlySpan<double> Vector(int index)
    {
        if (vectors is null) throw new InvalidOperationException("eigenvectors were not computed (computeVectors: false)");
        return vectors.AsSpan(index * Dimension, Dimension);
    }

    /// <summary>All eigenvalues (and eigenvectors) of the Laplacian as a dense matrix.</summary>
    public static SymmetricEigen Of(Laplacian laplacian, bool computeVectors = false) =>
        Decompose(laplacian.ToDense(), laplacian.Dimension, computeVectors);

    /// <summary>
    /// Decomposes the row-major n×n <paramref name="matrix"/>, which must be finite and symmetric to within rounding
    /// (1e-10 of its largest entry); the two triangles are averaged first so that rounding noise cannot break the algorithm.
    /// </summary>
    public static SymmetricEigen Decompose(ReadOnlySpan<double> matrix, int n, bool computeVectors = true)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), n, "the dimension must be positive");
        if (matrix.Length != (long)n * n) throw new ArgumentException($"a {n}×{n} matrix has {(long)n * n} entries, not {matrix.Length}", nameof(matrix));
        var a = Symmetrised(matrix, n);
        double scale = Math.Abs(TensorPrimitives.MaxMagnitude<double>(a));
        var diagonal = new double[n];
        var offDiagonal = new double[n];   // offDiagonal[i] = T[i + 1][i]; the last slot stays unused
        double[]? qt = computeVectors ? Identity(n) : null;
        if (scale > 0)
        {
            Tridiagonalise(a, n, diagonal, offDiagonal, qt);
            DiagonaliseTridiagonal(diagonal, offDiagonal, n, qt, scale);
        }

        // Ascending order, ties by position, so the result does not depend on how the iteration converged.
        var order = Enumerable.Range(0, n).OrderBy(i => diagonal[i]).ThenBy(i => i).ToArray();
        var values = order.Select(i => diagonal[i]).ToArray();
        double[]? vectors = null;
        if (qt is not null)
        {
            vectors = new double[(long)n * n];
            for (int j = 0; j < n; j++) qt.AsSpan(order[j] * n, n).CopyTo(vectors.AsSpan(j * n, n));
        }
        return new SymmetricEigen(n, values, vectors);
    }

    private static double[] Symmetrised(ReadOnlySpan<double> matrix, int n)
    {
        var a = matrix.ToArray();
        foreach (double v in a)
            if (!double.IsFinite(v)) throw new ArgumentException("the matrix has a non-finite entry", nameof(matrix));
        double tolerance = 1e-10 * Math.Abs(TensorPrimitives.MaxMagnitude<double>(a));   // MaxMagnitude keeps the sign
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
            {
                double upper = a[i * n + j], lower = a[j * n + i];
                if (Math.Abs(upper - lower) > tolerance)
                    throw new ArgumentException($"the matrix is not symmetric: A[{i}][{j}] = {upper} but A[{j}][{i}] = {lower}", nameof(matrix));
                a[i * n + j] = a[j * n + i] = 0.5 * (upper + lower);
            }
        return a;
    }

    private static double[] Identity(int n)
    {
        var q = new double[(long)n * n];
        for (int i = 0; i < n; i++) q[i * n + i] = 1;
        return q;
    }

    /// <summary>
    /// Householder reduction A = Q T Qᵀ. Step k reflects column k below the subdiagonal onto its first entry:
    /// H = I − β v vᵀ applied from both sides to the trailing block as S ← S − v wᵀ − w vᵀ with p = β S v and
    /// w = p − (β pᵀv / 2) v. When <paramref name="qt"/> is given it accumulates Qᵀ = H_{n−3} ⋯ H_0.
    /// </summary>
    private static void Tridiagonalise(double[] a, int n, double[] diagonal, double[] offDiagonal, double[]? qt)
    {
        var v = new double[n];
        var p = new double[n];
        var w = new double[n];
        var u = new double[n];
        for (int k = 0; k + 2 < n; k++)
        {
            int m = n - k - 1;   // the reflected block is rows and columns k+1 … n−1
            var x = v.AsSpan(0, m);
            for (int i = 0; i < m; i++) x[i] = a[(k + 1 + i) * n + k];
            double tail = TensorPrimitives.Norm<double>(x[1..]);
            if (tail == 0)
            {
                offDiagonal[k] = x[0];   // the column is already tridiagonal: nothing to reflect
                continue;
            }
            double norm = double.Hypot(x[0], tail);
            double alpha = x[0] >= 0 ? -norm : norm;   // the sign away from x[0] avoids cancellation in v = x − αe₁
            x[0] -= alpha;
            double beta = 2.0 / TensorPrimitives.Dot<double>(x, x);
            offDiagonal[k] = alpha;

            var pk = p.AsSpan(0, m);
            for (int i = 0; i < m; i++) pk[i] = beta * TensorPrimitives.Dot<double>(a.AsSpan((k + 1 + i) * n + k + 1, m), x);
            double half = 0.5 * beta * TensorPrimitives.Dot<double>(pk, x);
            var wk = w.AsSpan(0, m);
            TensorPrimitives.MultiplyAdd<double>(x, -half, pk, wk);
            for (int i = 0; i < m; i++)
            {
                var row = a.AsSpan((k + 1 + i) * n + k + 1, m);
                TensorPrimitives.MultiplyAdd<double>(wk, -x[i], row, row);
                TensorPrimitives.MultiplyAdd<double>(x, -wk[i], row, row);
            }

            if (qt is null) continue;
            // Qᵀ ← H Qᵀ, on rows k+1 … n−1: those rows minus β v (vᵀ rows).
            u.AsSpan().Clear();
            for (int i = 0; i < m; i++) TensorPrimitives.MultiplyAdd<double>(qt.AsSpan((k + 1 + i) * n, n), x[i], u, u);
            TensorPrimitives.Multiply<double>(u, beta, u);
            for (int i = 0; i < m; i++)
            {
                var row = qt.AsSpan((k + 1 + i) * n, n);
                TensorPrimitives.MultiplyAdd<double>(u, -x[i], row, row);
            }
        }
        for (int i = 0; i < n; i++) diagonal[i] = a[i * n + i];
        if (n >= 2) offDiagonal[n - 2] = a[(n - 1) * n + n - 2];
    }

    /// <summary>
    /// Implicit symmetric QR on the tridiagonal (d, e): split off converged eigenvalues where a subdiagonal entry is
    /// negligible, then chase a bulge through the unreduced block with Givens rotations, starting from the
    /// Wilkinson shift of its trailing 2×2 block. Each rotation R (in the plane k, k+1) makes T ← Rᵀ T R and,
    /// when eigenvectors are wanted, rows k and k+1 of Qᵀ rotate with it.
    /// </summary>
    private static void DiagonaliseTridiagonal(double[] d, double[] e, int n, double[]? qt, double scale)
    {
        const double Epsilon = 2.220446049250313e-16;
        double negligible = Epsilon * Epsilon * scale;   // absolute floor for blocks whose diagonal is ~0
        int hi = n - 1, steps = 0, maxSteps = 60 * n;
        while (hi > 0)
        {
            int lo = hi;
            while (lo > 0)
            {
                double off = Math.Abs(e[lo - 1]);
                if (off <= Epsilon * (Math.Abs(d[lo - 1]) + Math.Abs(d[lo])) || off <= negligible) { e[lo - 1] = 0; break; }
                lo--;
            }
            if (lo == hi) { hi--; continue; }
            if (++steps > maxSteps) throw new InvalidOperationException($"the symmetric QR iteration did not converge in {maxSteps} steps");

            double delta = 0.5 * (d[hi - 1] - d[hi]), b = e[hi - 1];
            double shift = d[hi] - b * b / (delta + (delta >= 0 ? 1 : -1) * double.Hypot(delta, b));
            double x = d[lo] - shift, z = e[lo];
            for (int k = lo; k < hi; k++)
            {
                double r = double.Hypot(x, z);
                double c = r == 0 ? 1 : x / r, s = r == 0 ? 0 : z / r;
                if (k > lo) e[k - 1] = r;
                double dk = d[k], dk1 = d[k + 1], ek = e[k];
                d[k] = c * c * dk + 2 * c * s * ek + s * s * dk1;
                d[k + 1] = s * s * dk - 2 * c * s * ek + c * c * dk1;
                e[k] = c * s * (dk1 - dk) + (c * c - s * s) * ek;
                if (k + 1 < hi)
                {
                    x = e[k];
                    z = s * e[k + 1];   // the bulge at (k+2, k)
                    e[k + 1] *= c;
                }
                if (qt is not null) Rotate(qt.AsSpan(k * n, n), qt.AsSpan((k + 1) * n, n), c, s);
            }
        }
    }

    private static void Rotate(Span<double> first, Span<double> second, double c, double s)
    {
        for (int i = 0; i < first.Length; i++)
        {
            double f = first[i], g = second[i];
            first[i] = c * f + s * g;
            second[i] = c * g - s * f;
        }
    }
}
