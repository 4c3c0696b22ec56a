namespace TauCluster.Engine;

/// <summary>
/// How to build a manifold; a null setting is chosen from the data (see <see cref="ManifoldBuilder"/> for each default
/// and why).
/// </summary>
public sealed record ManifoldBuildOptions
{
    /// <summary>k-means centroids X; null: ⌈√N⌉, at least 2, at most 256 and N.</summary>
    public int? Centroids { get; init; }

    /// <summary>Nearest neighbours kept per feature column; null: min(8, D − 1).</summary>
    public int? Neighbours { get; init; }

    /// <summary>Kernel scale σ of w = 1 / (1 + (d/σ)^p); null: the median distance of the graph's edges.</summary>
    public double? Sigma { get; init; }

    /// <summary>Kernel exponent p; 2 as in arrowspace.</summary>
    public double P { get; init; } = ManifoldBuilder.DefaultP;

    public ulong Seed { get; init; } = ManifoldBuilder.DefaultSeed;

    /// <summary>Lloyd iterations at most; the clustering stops earlier when no item changes cluster.</summary>
    public int MaxIterations { get; init; } = 50;

    /// <summary>The τ mode recorded as the domain's default (manifold.json synthesis.TauMode).</summary>
    public TaumodeKind Taumode { get; init; } = TaumodeKind.Median;

    /// <summary>The manifold's name_id.</summary>
    public string Name { get; init; } = "manifold";
}

/// <summary>The settings a build actually used (defaults resolved against the data) and what came out.</summary>
public sealed record ManifoldBuildSettings(
    string Name, string Source, int Items, int Features, int Centroids, int Neighbours, double Sigma, bool SigmaFromData, double P,
    ulong Seed, int Iterations, bool Converged, int Edges, int ConnectedComponents, TaumodeKind Taumode);

public sealed record ManifoldBuild(Laplacian Laplacian, ManifoldBuildSettings Settings);
