using System.Numerics;
using TauCluster.Engine;

namespace TauCluster.Training;

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
    public static double Lambda<T>(ReadOnlySpan<T> x, Laplacian laplacian, in TaumodeSettings settings, out double tau)
        where T : IFloatingPointIeee754<T>
    {
        tau = Taumode.FlooredTau(x, settings);
        return Lambda(x, laplacian, settings.Eps, tau);
    }

    /// <summary>λ(x), also writing L·x to <paramref name="lx"/> and returning the parts the backward needs, so that it need not recompute them.</summary>
    public static double Lambda<T>(ReadOnlySpan<T> x, Laplacian laplacian, in TaumodeSettings settings, Span<T> lx, out LambdaParts parts)
        where T : IFloatingPointIeee754<T>
    {
        double tau = Taumode.FlooredTau(x, settings);
        double norm2 = Taumode.SquaredNorm(x);
        double quadratic = laplacian.MultiplyAndQuadraticForm(x, lx);
        double energy = Math.Max(quadratic, 0.0) / (norm2 + settings.Eps);
        parts = new LambdaParts(tau, energy, quadratic, norm2);
        return energy / (energy + tau);
    }

    /// <summary>λ(x) = E / (E + τ) for a given τ.</summary>
    public static double Lambda<T>(ReadOnlySpan<T> x, Laplacian laplacian, double eps, double tau)
        where T : IFloatingPointIeee754<T>
    {
        double energy = Taumode.RayleighEnergy(x, laplacian, eps);
        return energy / (energy + tau);
    }

    /// <summary>
    /// Backward of λ with τ held constant: dx = dλ · τ/(E+τ)² · 2(Lx − E·x)/(xᵀx + eps) where xᵀLx &gt; 0, else 0
    /// (the max(·, 0) is flat there). Writes dx, or adds it when <paramref name="accumulate"/>.
    /// For the fixed mode τ is a constant and this is the exact gradient. For median, mean and percentile, τ depends on x;
    /// training treats the selected τ as a constant (no gradient flows through the order statistic or the mean into τ),
    /// which is what this computes; the gradient checks therefore test those modes with τ frozen.
    /// </summary>
    public static void LambdaBackward<T>(ReadOnlySpan<T> x, Laplacian laplacian, double eps, double tau, double dLambda, Span<T> dx,
        bool accumulate = false) where T : IFloatingPointIeee754<T>
    {
        var lx = new T[x.Length];
        double quadratic = laplacian.MultiplyAndQuadraticForm(x, lx);
        double norm2 = Taumode.SquaredNorm(x);
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
