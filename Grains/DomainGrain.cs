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
    private string Name => this.GetPrimaryKeyString();

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

    private async Task AddVersion(string source, Laplacian laplacian)
    {
        state.State.Versions.Add(new DomainVersion(source, TripletCodec.Pack(laplacian), laplacian.NonZeros));
        await state.WriteStateAsync();
    }

    private DomainInfo Info(int version)
    {
        var v = state.State.Versions[version - 1];
        return new DomainInfo(Name, version, v.Triplets.Dimension, v.NonZeros, v.Triplets.Taumode, v.Source);
    }
}
