using System.Numerics;
using TauCluster.Engine;

namespace TauCluster.Training;

/// <summary>
/// The Engine's Laplacian in compressed rows (read through its public <see cref="Laplacian.Entries"/>, in the same
/// row-major order), with what the λ gradient needs beyond the quadratic form: the product L·x.
/// </summary>
public sealed class SparseLaplacian
{
    private readonly int[] rowStart;
    private readonly int[] columns;
    private readonly double[] values;

    public SparseLaplacian(Laplacian laplacian)
    {
        Dimension = laplacian.Dimension;
        var entries = laplacian.Entries().ToArray();
        rowStart = new int[Dimension + 1];
        columns = new int[entries.Length];
        values = new double[entries.Length];
        for (int k = 0; k < entries.Length; k++)
        {
            rowStart[entries[k].Row + 1]++;
            columns[k] = entries[k].Column;
            values[k] = entries[k].Value;
        }
        for (int i = 0; i < Dimension; i++) rowStart[i + 1] += rowStart[i];
    }

    public int Dimension { get; }

    /// <summary>xᵀLx in double, summed row by row as <see cref="Laplacian.QuadraticForm"/> does.</summary>
    public double QuadraticForm<T>(ReadOnlySpan<T> x) where T : IFloatingPointIeee754<T>
    {
        double total = 0;
        for (int i = 0; i < Dimension; i++)
        {
            double rowDot = 0;
            for (int k = rowStart[i]; k < rowStart[i + 1]; k++) rowDot += values[k] * double.CreateTruncating(x[columns[k]]);
            total += double.CreateTruncating(x[i]) * rowDot;
        }
        return total;
    }

    /// <summary>
    /// lx = L·x (each row summed in double, then rounded to T) and returns xᵀLx = Σᵢ xᵢ(Lx)ᵢ from the unrounded rows,
    /// which is <see cref="QuadraticForm{T}"/> bit for bit.
    /// </summary>
    public double MultiplyAndQuadraticForm<T>(ReadOnlySpan<T> x, Span<T> lx) where T : IFloatingPointIeee754<T>
    {
        double total = 0;
        for (int i = 0; i < Dimension; i++)
        {
            double rowDot = 0;
            for (int k = rowStart[i]; k < rowStart[i + 1]; k++) rowDot += values[k] * double.CreateTruncating(x[columns[k]]);
            lx[i] = T.CreateTruncating(rowDot);
            total += double.CreateTruncating(x[i]) * rowDot;
        }
        return total;
    }

    /// <summary>lx = L·x in double.</summary>
    public void Multiply<T>(ReadOnlySpan<T> x, Span<double> lx) where T : IFloatingPointIeee754<T>
    {
        for (int i = 0; i < Dimension; i++)
        {
            double rowDot = 0;
            for (int k = rowStart[i]; k < rowStart[i + 1]; k++) rowDot += values[k] * double.CreateTruncating(x[columns[k]]);
            lx[i] = rowDot;
        }
    }
}

/// <summary>What the backward of λ needs from its forward: τ (floored), E, xᵀLx and xᵀx.</summary>
public readonly record struct LambdaParts(double Tau, double Energy, double Quadratic, double Norm2);

/// <summary>
/// The taumode λ of a head vector and its gradient (DESIGN.md §1):
/// E(x) = max(xᵀLx, 0) / (xᵀx + eps), τ by mode then floored (max(τ, 1e-10), then max(τ, eps)), λ = E / (E + τ).
/// Computed in double from the vector's components and rounded once, as the Engine's <see cref="Taumode"/> does, so a
/// float vector gets bit for bit the λ that inference gives it.
/// </summary>
public static class TauLambda
{
    /// <summary>λ(x) with τ selected from x by the settings' mode; <paramref name="tau"/> returns the floored τ for the backward.</summary>
    public static double Lambda<T>(ReadOnlySpan<T> x, SparseLaplacian laplacian, in TaumodeSettings settings, out double tau)
        where T : IFloatingPointIeee754<T>
    {
        tau = FlooredTau(x, settings);
        return Lambda(x, laplacian, settings.Eps, tau);
    }

    /// <summary>λ(x), also writing L·x to <paramref name="lx"/> and returning the parts the backward needs, so that it need not recompute them.</summary>
    public static double Lambda<T>(ReadOnlySpan<T> x, SparseLaplacian laplacian, in TaumodeSettings settings, Span<T> lx, out LambdaParts parts)
        where T : IFloatingPointIeee754<T>
    {
        double tau = FlooredTau(x, settings);
        double norm2 = Norm2(x);
        double quadratic = laplacian.MultiplyAndQuadraticForm(x, lx);
        double energy = Math.Max(quadratic, 0.0) / (norm2 + settings.Eps);
        parts = new LambdaParts(tau, energy, quadratic, norm2);
        return energy / (energy + tau);
    }

    /// <summary>λ(x) = E / (E + τ) for a given τ.</summary>
    public static double Lambda<T>(ReadOnlySpan<T> x, SparseLaplacian laplacian, double eps, double tau)
        where T : IFloatingPointIeee754<T>
    {
        double energy = RayleighEnergy(x, laplacian, eps, out _, out _);
        return energy / (energy + tau);
    }

    /// <summary>E(x) = max(xᵀLx, 0) / (xᵀx + eps); also returns xᵀLx and xᵀx.</summary>
    public static double RayleighEnergy<T>(ReadOnlySpan<T> x, SparseLaplacian laplacian, double eps, out double quadratic, out double norm2)
        where T : IFloatingPointIeee754<T>
    {
        norm2 = Norm2(x);
        quadratic = laplacian.QuadraticForm(x);
        return Math.Max(quadratic, 0.0) / (norm2 + eps);
    }

    private static double Norm2<T>(ReadOnlySpan<T> x) where T : IFloatingPointIeee754<T>
    {
        double norm2 = 0;
        foreach (T v in x) norm2 += double.CreateTruncating(v) * double.CreateTruncating(v);
        return norm2;
    }

    /// <summary>τ = max(max(τ_mode(x), 1e-10), eps).</summary>
    public static double FlooredTau<T>(ReadOnlySpan<T> x, in TaumodeSettings settings) where T : IFloatingPointIeee754<T> =>
        Math.Max(Math.Max(SelectTau(x, settings), Taumode.TauFloor), settings.Eps);

    /// <summary>τ before flooring: the fixed value, or the median, mean or percentile of x's finite components (as <see cref="Taumode.SelectTau"/>).</summary>
    public static double SelectTau<T>(ReadOnlySpan<T> x, in TaumodeSettings settings) where T : IFloatingPointIeee754<T>
    {
        if (settings.Mode == TauModeKind.Fixed) return settings.Tau;
        if (settings.Mode == TauModeKind.Mean)
        {
            double sum = 0;
            int count = 0;
            foreach (T v in x)
                if (T.IsFinite(v)) { sum += double.CreateTruncating(v); count++; }
            return count == 0 ? Taumode.TauFloor : sum / count;
        }
        Span<double> sorted = x.Length <= 512 ? stackalloc double[x.Length] : new double[x.Length];
        int n = 0;
        foreach (T v in x)
            if (T.IsFinite(v)) sorted[n++] = double.CreateTruncating(v);
        if (n == 0) return Taumode.TauFloor;
        sorted = sorted[..n];
        sorted.Sort();
        if (settings.Mode == TauModeKind.Median)
            return n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
        int index = (int)Math.Floor((n - 1) * settings.Percentile + 0.5);
        return sorted[Math.Clamp(index, 0, n - 1)];
    }

    /// <summary>
    /// Backward of λ with τ held constant: dx = dλ · τ/(E+τ)² · 2(Lx − E·x)/(xᵀx + eps) where xᵀLx &gt; 0, else 0
    /// (the max(·, 0) is flat there). Writes dx, or adds it when <paramref name="accumulate"/>.
    /// For the fixed mode τ is a constant and this is the exact gradient. For median, mean and percentile, τ depends on x;
    /// training treats the selected τ as a constant (no gradient flows through the order statistic or the mean into τ),
    /// which is what this computes; the gradient checks therefore test those modes with τ frozen.
    /// </summary>
    public static void LambdaBackward<T>(ReadOnlySpan<T> x, SparseLaplacian laplacian, double eps, double tau, double dLambda, Span<T> dx,
        bool accumulate = false) where T : IFloatingPointIeee754<T>
    {
        var lx = new T[x.Length];
        double quadratic = laplacian.MultiplyAndQuadraticForm(x, lx);
        double norm2 = Norm2(x);
        var parts = new LambdaParts(tau, Math.Max(quadratic, 0.0) / (norm2 + eps), quadratic, norm2);
        LambdaBackward(x, lx, parts, eps, dLambda, dx, accumulate);
    }

    /// <summary>The same from the forward's L·x and parts.</summary>
    public static void LambdaBackward<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> lx, in LambdaParts parts, double eps, double dLambda, Span<T> dx,
        bool accumulate = false) where T : IFloatingPointIeee754<T>
    {
        if (parts.Quadratic <= 0 || dLambda == 0)
        {
            if (!accumulate) dx.Clear();
            return;
        }
        double denominator = parts.Energy + parts.Tau;
        T scale = T.CreateTruncating(dLambda * parts.Tau / (denominator * denominator) * 2.0 / (parts.Norm2 + eps));
        T energy = T.CreateTruncating(parts.Energy);
        for (int i = 0; i < x.Length; i++)
        {
            T g = scale * (lx[i] - energy * x[i]);
            dx[i] = accumulate ? dx[i] + g : g;
        }
    }
}
