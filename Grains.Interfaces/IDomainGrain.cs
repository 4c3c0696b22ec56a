namespace TauCluster.Grains;

/// <summary>
/// One domain's Laplacian (the grain key is its name): loaded from the manifolds root or registered from
/// triplets. Every registration is a new version; versions stay readable so sessions replay exactly.
/// </summary>
public interface IDomainGrain : IGrainWithStringKey
{
    /// <summary>The current version, loading the manifold of the same name from the configured root on first use.</summary>
    Task<DomainInfo> GetInfo();

    /// <summary>Registers a Laplacian from COO triplets as the next version.</summary>
    Task<DomainInfo> Register(DomainTriplets triplets);

    /// <summary>A version's matrix as compact bytes, for a silo's local copy.</summary>
    Task<DomainTriplets> GetTriplets(int version);

    /// <summary>The current version's spectrum, in brief (what <c>tau manifold inspect</c> prints of it).</summary>
    Task<DomainSpectrum> GetSpectrum();
}

/// <summary>The names of every domain the cluster has loaded or registered (the grain with key 0).</summary>
public interface IDomainRegistryGrain : IGrainWithIntegerKey
{
    Task Add(string name);

    [Orleans.Concurrency.AlwaysInterleave]
    Task<string[]> GetNames();
}

/// <summary>
/// A Laplacian's spectrum in brief: its extremes, the Fiedler value λ₂ (0 when the graph is disconnected), as many
/// zero eigenvalues as connected components, and a histogram of the eigenvalues over [λ_min, λ_max].
/// </summary>
[GenerateSerializer, Immutable]
public sealed record DomainSpectrum(
    [property: Id(0)] int Version,
    [property: Id(1)] double Smallest,
    [property: Id(2)] double Fiedler,
    [property: Id(3)] double Largest,
    [property: Id(4)] int ZeroEigenvalues,
    [property: Id(5)] int ConnectedComponents,
    [property: Id(6)] double[] HistogramEdges,
    [property: Id(7)] int[] HistogramCounts);

[GenerateSerializer, Immutable]
public sealed record DomainInfo(
    [property: Id(0)] string Name,
    [property: Id(1)] int Version,
    [property: Id(2)] int Dimension,
    [property: Id(3)] int NonZeros,
    [property: Id(4)] string? Taumode,
    [property: Id(5)] string Source);

/// <summary>
/// A D×D matrix as COO triplets packed little-endian into one buffer (int32 row, int32 col, float64 value per
/// entry): Orleans copies a byte[] in one block, where it would encode a double[] element by element.
/// </summary>
[GenerateSerializer, Immutable]
public sealed record DomainTriplets(
    [property: Id(0)] int Dimension,
    [property: Id(1)] byte[] Entries,
    [property: Id(2)] string? Taumode);
