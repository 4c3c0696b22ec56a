namespace TauCluster.Engine;

/// <summary>Resolved taumode parameters: τ mode, the fixed τ, eps, attention temperature and percentile p.</summary>
public readonly record struct TaumodeSettings(TauModeKind Mode, double Tau, double Eps, double Temperature, double Percentile)
{
    /// <summary>The divisor of λ distances: max(temperature, eps).</summary>
    public double EffectiveTemperature => Math.Max(Temperature, Eps);
}

/// <summary>
/// The taumode λ of a head vector x against a Laplacian L (DESIGN.md §1):
/// E = max(xᵀLx, 0) / (xᵀx + eps); τ by mode, floored at 1e-10 then at eps; λ = E / (E + τ).
/// Everything is computed in double and rounded once at the end.
/// </summary>
public static class Taumode
{
    public const double TauFloor = 1e-10;

    public static float Lambda(ReadOnlySpan<float> x, Laplacian laplacian, in TaumodeSettings settings)
    {
        double energy = RayleighEnergy(x, laplacian, settings.Eps);
        double tau = Math.Max(Math.Max(SelectTau(x, settings), TauFloor), settings.Eps);
        return (float)(energy / (energy + tau));
    }

    /// <summary>E(x) = max(xᵀLx, 0) / (xᵀx + eps).</summary>
    public static double RayleighEnergy(ReadOnlySpan<float> x, Laplacian laplacian, double eps)
    {
        double norm2 = 0;
        foreach (float v in x) norm2 += (double)v * v;
        return Math.Max(laplacian.QuadraticForm(x), 0.0) / (norm2 + eps);
    }

    /// <summary>τ before flooring: the fixed value, or the median, mean or percentile of x's finite components.</summary>
    public static double SelectTau(ReadOnlySpan<float> x, in TaumodeSettings settings)
    {
        if (settings.Mode == TauModeKind.Fixed) return settings.Tau;
        if (settings.Mode == TauModeKind.Mean)
        {
            double sum = 0; int count = 0;
            foreach (float v in x) if (float.IsFinite(v)) { sum += v; count++; }
            return count == 0 ? TauFloor : sum / count;
        }

        // Median and percentile need the finite components in order; head vectors are small, so sort on the stack.
        Span<float> sorted = x.Length <= 1024 ? stackalloc float[x.Length] : new float[x.Length];
        int n = 0;
        foreach (float v in x) if (float.IsFinite(v)) sorted[n++] = v;
        if (n == 0) return TauFloor;
        sorted = sorted[..n];
        sorted.Sort();
        if (settings.Mode == TauModeKind.Median)
            return n % 2 == 1 ? sorted[n / 2] : 0.5 * ((double)sorted[n / 2 - 1] + sorted[n / 2]);
        int index = (int)Math.Floor((n - 1) * settings.Percentile + 0.5);
        return sorted[Math.Clamp(index, 0, n - 1)];
    }
}
