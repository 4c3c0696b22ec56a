namespace TauCluster.Engine;

/// <summary>
/// The spectrum of a feature-space Laplacian and what it says about the graph: as many zero eigenvalues as connected
/// components, the algebraic connectivity (Fiedler value λ₂, 0 exactly when the graph is disconnected) and the
/// largest eigenvalue, which bounds the Rayleigh energy E(x) ≤ λ_max that taumode turns into λ.
/// </summary>
public sealed record LaplacianSpectrum(string Name, int Dimension, double[] Eigenvalues, double ZeroTolerance, int ConnectedComponents)
{
    /// <summary>Eigenvalues at most this far from 0, relative to max(1, λ_max), count as zero (rounding is ~1e-13 of it).</summary>
    public const double RelativeZeroTolerance = 1e-9;

    public static LaplacianSpectrum Of(Laplacian laplacian)
    {
        var values = SymmetricEigen.Of(laplacian).Values;
        double tolerance = RelativeZeroTolerance * Math.Max(1.0, Math.Abs(values[^1]));
        return new LaplacianSpectrum(laplacian.Name, laplacian.Dimension, values, tolerance, laplacian.ConnectedComponents());
    }

    public double Smallest => Eigenvalues[0];
    public double Largest => Eigenvalues[^1];

    /// <summary>Eigenvalues within <see cref="ZeroTolerance"/> of 0; equals <see cref="ConnectedComponents"/> for a graph Laplacian.</summary>
    public int ZeroEigenvalues => Eigenvalues.Count(v => Math.Abs(v) <= ZeroTolerance);

    /// <summary>λ₂, the second smallest eigenvalue (for a 1×1 Laplacian, its only one).</summary>
    public double Fiedler => Eigenvalues[Math.Min(1, Eigenvalues.Length - 1)];

    /// <summary>The q-quantile by the same rule as taumode's percentile: index floor((n − 1)·q + 0.5) of the ascending values.</summary>
    public double Quantile(double q)
    {
        if (q is < 0 or > 1 || double.IsNaN(q)) throw new ArgumentOutOfRangeException(nameof(q), q, "a quantile lies in [0, 1]");
        return Eigenvalues[(int)Math.Floor((Eigenvalues.Length - 1) * q + 0.5)];
    }

    /// <summary>Counts of eigenvalues in <paramref name="bins"/> equal-width bins over [λ_min, λ_max]; the last bin is closed.</summary>
    public (double[] Edges, int[] Counts) Histogram(int bins)
    {
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins), bins, "at least one bin");
        double low = Smallest, width = (Largest - low) / bins;
        var edges = Enumerable.Range(0, bins + 1).Select(i => i == bins ? Largest : low + i * width).ToArray();
        var counts = new int[bins];
        foreach (double v in Eigenvalues)
            counts[width > 0 ? Math.Min((int)((v - low) / width), bins - 1) : 0]++;
        return (edges, counts);
    }
}
