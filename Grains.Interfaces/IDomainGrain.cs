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
}

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
