using TauCluster.Engine;

namespace TauCluster.Grains;

[GenerateSerializer]
public sealed class DomainState
{
    [Id(0)] public List<DomainVersion> Versions { get; set; } = [];
}

[GenerateSerializer, Immutable]
public sealed record DomainVersion(
    [property: Id(0)] string Source,
    [property: Id(1)] DomainTriplets Triplets,
    [property: Id(2)] int NonZeros);

public sealed class DomainGrain(
    [PersistentState("domain", TauStorage.Name)] IPersistentState<DomainState> state,
    ManifoldCatalog catalog) : Grain, IDomainGrain
{
    /// <summary>Bins of the spectrum's histogram: as many as <c>tau manifold inspect</c> prints.</summary>
    public const int HistogramBins = 10;

    private DomainSpectrum? spectrum;   // of the current version; an eigendecomposition is worth keeping

    private string Name => this.GetPrimaryKeyString();

    // A domain stored before the registry existed joins it when next used (adding a name it has is a read).
    public override Task OnActivateAsync(CancellationToken cancellationToken) =>
        state.State.Versions.Count > 0 ? GrainFactory.GetGrain<IDomainRegistryGrain>(0).Add(Name) : Task.CompletedTask;

    public async Task<DomainInfo> GetInfo()
    {
        if (state.State.Versions.Count == 0)
        {
            var dir = catalog.Find(Names.Require("domain", Name))
                ?? throw new UnknownNameException("domain", Name, "no manifold of that name under the configured manifolds root, and none registered");
            var laplacian = await Manifold.LoadAsync(dir);
            await AddVersion($"manifold:{Name}", laplacian);
        }
        return Info(state.State.Versions.Count);
    }

    public async Task<DomainInfo> Register(DomainTriplets triplets)
    {
        Names.Require("domain", Name);
        var laplacian = TripletCodec.Unpack(Name, triplets);   // validates before anything is stored
        await AddVersion("registered", laplacian);
        return Info(state.State.Versions.Count);
    }

    public Task<DomainTriplets> GetTriplets(int version) =>
        version >= 1 && version <= state.State.Versions.Count
            ? Task.FromResult(state.State.Versions[version - 1].Triplets)
            : throw new UnknownNameException("domain version", $"{Name}@{version}");

    public async Task<DomainSpectrum> GetSpectrum()
    {
        var info = await GetInfo();
        if (spectrum?.Version == info.Version) return spectrum;
        var of = LaplacianSpectrum.Of(TripletCodec.Unpack(Name, state.State.Versions[info.Version - 1].Triplets));
        var (edges, counts) = of.Histogram(HistogramBins);
        return spectrum = new DomainSpectrum(info.Version, of.Smallest, of.Fiedler, of.Largest, of.ZeroEigenvalues, of.ConnectedComponents, edges, counts);
    }

    private async Task AddVersion(string source, Laplacian laplacian)
    {
        state.State.Versions.Add(new DomainVersion(source, TripletCodec.Pack(laplacian), laplacian.NonZeros));
        await state.WriteStateAsync();
        if (state.State.Versions.Count == 1) await GrainFactory.GetGrain<IDomainRegistryGrain>(0).Add(Name);
    }

    private DomainInfo Info(int version)
    {
        var v = state.State.Versions[version - 1];
        return new DomainInfo(Name, version, v.Triplets.Dimension, v.NonZeros, v.Triplets.Taumode, v.Source);
    }
}

[GenerateSerializer]
public sealed class DomainRegistryState
{
    [Id(0)] public List<string> Names { get; set; } = [];
}

public sealed class DomainRegistryGrain(
    [PersistentState("domain-registry", TauStorage.Name)] IPersistentState<DomainRegistryState> state) : Grain, IDomainRegistryGrain
{
    public async Task Add(string name)
    {
        if (state.State.Names.Contains(name)) return;
        state.State.Names.Add(name);
        await state.WriteStateAsync();
    }

    public Task<string[]> GetNames() => Task.FromResult(state.State.Names.ToArray());
}
