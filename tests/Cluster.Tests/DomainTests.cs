using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

[Collection(nameof(ClusterCollection))]
public sealed class DomainTests(ClusterFixture fixture)
{
    private static SessionSpec Spec(string domain, string model = TestWorld.Tiny, ulong seed = 2) =>
        new(model, domain, new SamplingSettings(0.8, 0, 1, seed));

    private static Laplacian Star(int n, double weight)
    {
        var rows = new List<long>(); var cols = new List<long>(); var values = new List<double>();
        for (int i = 1; i < n; i++)
        {
            rows.AddRange([0, i, 0, i]); cols.AddRange([i, 0, 0, i]); values.AddRange([-weight, -weight, weight, weight]);
        }
        return Laplacian.FromTriplets("star", n, n, rows.ToArray(), cols.ToArray(), values.ToArray(), TaumodeKind.Fixed);
    }

    private async Task<int[]> Generate(string id, int count)
    {
        var ids = new List<int>();
        await foreach (var t in fixture.Sessions.Generate(id, count)) ids.Add(t.Id);
        return ids.ToArray();
    }

    [Fact]
    public async Task A_manifold_under_the_root_is_a_domain_of_its_name()
    {
        var info = await fixture.Client.GetGrain<IDomainGrain>(TestWorld.Chain32).GetInfo();
        Assert.Equal((1, 32, "mean", "manifold:chain32"), (info.Version, info.Dimension, info.Taumode, info.Source));
        var id = $"d-{Guid.NewGuid():N}";
        var opened = await fixture.Sessions.Open(id, Spec(TestWorld.Chain32));
        Assert.Equal(TestWorld.Chain32, opened.Domain);
        await fixture.Sessions.Append(id, PromptInput.FromText("domain"));
        Assert.Equal(5, (await Generate(id, 5)).Length);
    }

    [Fact]
    public async Task The_domain_changes_what_a_session_generates()
    {
        var name = $"star-{Guid.NewGuid():N}";
        await fixture.Client.GetGrain<IDomainGrain>(name).Register(TripletCodec.Pack(Star(32, 5)));
        async Task<int[]> With(string? domain)
        {
            var id = $"d-{Guid.NewGuid():N}";
            await fixture.Sessions.Open(id, new SessionSpec(TestWorld.Tiny, domain, new SamplingSettings(0, 0, 1, 0)));
            await fixture.Sessions.Append(id, PromptInput.FromText("which domain am I in?"));
            return await Generate(id, 24);
        }
        Assert.NotEqual(await With(null), await With(name));
    }

    [Fact]
    public async Task A_session_keeps_its_domain_version_when_a_new_one_is_registered()
    {
        var name = $"star-{Guid.NewGuid():N}";
        var domain = fixture.Client.GetGrain<IDomainGrain>(name);
        Assert.Equal(1, (await domain.Register(TripletCodec.Pack(Star(32, 1)))).Version);

        async Task<string> Opened()
        {
            var id = $"d-{Guid.NewGuid():N}";
            await fixture.Sessions.Open(id, Spec(name));
            await fixture.Sessions.Append(id, PromptInput.FromText("versioned"));
            return id;
        }
        var reference = await Opened();
        var expected = await Generate(reference, 10);

        var session = await Opened();
        var first = await Generate(session, 5);
        Assert.Equal(2, (await domain.Register(TripletCodec.Pack(Star(32, 9)))).Version);
        await fixture.Cluster.DeactivateAsync(fixture.Sessions.Session(session));   // the next call replays on version 1
        var rest = await Generate(session, 5);
        Assert.Equal(expected, first.Concat(rest));
        Assert.Equal("versioned".Length + 5, (await fixture.Sessions.Info(session)).RebuiltTokens);
    }

    [Fact]
    public async Task Sessions_on_a_silo_share_one_copy_of_a_domain()
    {
        var name = $"star-{Guid.NewGuid():N}";
        await fixture.Client.GetGrain<IDomainGrain>(name).Register(TripletCodec.Pack(Star(32, 2)));
        var silos = new HashSet<string>();
        for (int i = 0; i < 9; i++)
        {
            var id = $"d-{Guid.NewGuid():N}";
            silos.Add((await fixture.Sessions.Open(id, Spec(name))).Silo);
            await fixture.Sessions.Append(id, PromptInput.FromText("share"));
        }
        foreach (var silo in silos)
        {
            var laplacians = fixture.SiloService<LocalSessions>(silo).All
                .Select(c => c.Inference.Domain?.Laplacian).Where(l => l is not null && l.Name == name).Distinct().ToList();
            Assert.Single(laplacians);   // one instance, however many sessions on the silo use it
        }
    }

    [Fact]
    public async Task Registering_a_malformed_laplacian_is_refused_and_nothing_is_stored()
    {
        var name = $"bad-{Guid.NewGuid():N}";
        var domain = fixture.Client.GetGrain<IDomainGrain>(name);
        var bytes = TripletCodec.Pack(Laplacian.Chain(3)).Entries;
        bytes[31] ^= 0x80;   // flips the sign of entry 1, L[0][1]: now L[0][1] = 1 but L[1][0] = −1
        await Assert.ThrowsAsync<LaplacianException>(() => domain.Register(new DomainTriplets(3, bytes, null)));
        await Assert.ThrowsAsync<LaplacianException>(() => domain.Register(new DomainTriplets(3, bytes[..^3], null)));
        await Assert.ThrowsAsync<UnknownNameException>(() => domain.GetInfo());
        var single = new DomainTriplets(2, TripletCodec.Pack(Laplacian.Chain(2)).Entries[..16], null);   // L[0][0] alone is symmetric
        Assert.Equal(1, (await domain.Register(single)).Version);
    }

    [SkippableFact]
    public async Task The_real_manifold_is_a_domain_for_a_384_dimensional_model()
    {
        TestPaths.RequireRealManifoldDirectory();
        var id = $"d-{Guid.NewGuid():N}";
        await fixture.Sessions.Open(id, Spec(TestWorld.RealDomain, TestWorld.Tiny384));
        await fixture.Sessions.Append(id, PromptInput.FromText("CVE-2024"));
        Assert.Equal(6, (await Generate(id, 6)).Length);
        var info = await fixture.Client.GetGrain<IDomainGrain>(TestWorld.RealDomain).GetInfo();
        Assert.Equal((384, 6408, "median"), (info.Dimension, info.NonZeros, info.Taumode));
    }
}
