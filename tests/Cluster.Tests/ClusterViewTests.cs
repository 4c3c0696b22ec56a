using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>The console's view of the cluster: every silo's sessions, shards and rates as the silo itself reports them, and the domains the cluster knows.</summary>
[Collection(nameof(ClusterCollection))]
public sealed class ClusterViewTests(ClusterFixture fixture)
{
    private const int Generated = 12;

    private async Task<string> Run(string? domain = null)
    {
        var id = $"view-{Guid.NewGuid():N}";
        await fixture.Sessions.Open(id, new SessionSpec(TestWorld.Tiny, domain, new SamplingSettings(0.8, Seed: 3)));
        await fixture.Sessions.Append(id, PromptInput.FromText("a live session"));
        await foreach (var _ in fixture.Sessions.Generate(id, Generated)) { }
        return id;
    }

    [Fact]
    public async Task Each_silo_lists_the_sessions_it_holds_with_their_cache_against_kv_and_a_deleted_session_leaves_the_view()
    {
        var ids = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Run()));
        var infos = await Task.WhenAll(ids.Select(id => fixture.Sessions.Info(id)));

        var silos = await ClusterView.Silos(fixture.Client);
        Assert.Equal(fixture.Cluster.Silos.Select(s => s.SiloAddress.ToString()).Order(), silos.Select(s => s.Silo).Order());
        Assert.All(silos, s => Assert.Null(s.Error));
        foreach (var info in infos)
        {
            var silo = Assert.Single(silos, s => s.Sessions.Any(v => v.Session == info.Session));
            Assert.Equal(info.Silo, silo.Silo);
            var view = silo.Sessions.Single(v => v.Session == info.Session);
            Assert.Equal((info.Model, info.Domain, info.CacheBytes, info.BaselineCacheBytes), (view.Model, view.Domain, view.CacheBytes, view.BaselineCacheBytes));
            Assert.Equal(info.Length - 1, view.CachedTokens);   // the last token handed out joins the cache with the next step
            Assert.Equal(Generated, view.GeneratedTokens);
            Assert.True(view.CacheBytes < view.BaselineCacheBytes, $"a tau cache of {view.CacheBytes} bytes against {view.BaselineCacheBytes} for (K, V)");
        }
        Assert.All(silos, s => Assert.Equal(s.Sessions.Sum(v => v.CacheBytes), s.CacheBytes));
        Assert.Contains(silos, s => s.Batch.Passes > 0 && s.Batch.Lanes >= s.Batch.Passes && s.Batch.Largest >= 1);

        await fixture.Sessions.Session(ids[0]).Delete();
        var after = (await ClusterView.Silos(fixture.Client)).SelectMany(s => s.Sessions).Select(v => v.Session).ToArray();
        Assert.DoesNotContain(ids[0], after);
        Assert.Contains(ids[1], after);
    }

    [Fact]
    public async Task The_domains_view_lists_manifolds_and_registered_domains_with_their_spectrum_and_the_sessions_using_them()
    {
        string registered = $"registered-{Guid.NewGuid():N}";
        await fixture.Client.GetGrain<IDomainGrain>(registered).Register(TripletCodec.Pack(Laplacian.Chain(16)));
        var session = await Run(TestWorld.Chain32);
        var catalog = fixture.SiloService<ManifoldCatalog>(fixture.Cluster.Silos[0].SiloAddress.ToString());

        var domains = await ClusterView.Domains(fixture.Client, catalog, await ClusterView.Silos(fixture.Client));

        var chain = Assert.Single(domains, d => d.Name == TestWorld.Chain32);
        Assert.Null(chain.Error);
        Assert.Contains(session, chain.Sessions);
        Assert.Equal((32, "manifold:" + TestWorld.Chain32), (chain.Info!.Dimension, chain.Info.Source));
        var expected = LaplacianSpectrum.Of(Laplacian.Chain(32));
        Assert.Equal(expected.Largest, chain.Spectrum!.Largest, 9);
        Assert.Equal(expected.Fiedler, chain.Spectrum.Fiedler, 9);
        Assert.Equal((1, 1), (chain.Spectrum.ZeroEigenvalues, chain.Spectrum.ConnectedComponents));
        Assert.Equal(expected.Histogram(DomainGrain.HistogramBins).Counts, chain.Spectrum.HistogramCounts);

        var mine = Assert.Single(domains, d => d.Name == registered);
        Assert.Equal(("registered", 16), (mine.Info!.Source, mine.Info.Dimension));
        Assert.Empty(mine.Sessions);
        if (TestPaths.RealManifoldDirectory() is not null)
            Assert.Equal(384, Assert.Single(domains, d => d.Name == TestWorld.RealDomain).Info!.Dimension);
    }

    [Fact]
    public async Task A_silo_view_is_placed_on_the_silo_its_key_names_and_never_elsewhere()
    {
        foreach (var silo in fixture.Cluster.Silos)
            Assert.Equal(silo.SiloAddress.ToString(), (await fixture.Client.GetGrain<ISiloViewGrain>(silo.SiloAddress.ToParsableString()).GetView()).Silo);

        var gone = SiloAddress.New(System.Net.IPAddress.Loopback, 1, 1).ToParsableString();   // no such silo in this cluster
        var error = await Assert.ThrowsAnyAsync<Exception>(() => fixture.Client.GetGrain<ISiloViewGrain>(gone).GetView());
        Assert.Contains("is not in the cluster", error.ToString());
    }

    [Fact]
    public void A_token_rate_averages_the_last_seconds_and_forgets_older_ones()
    {
        long now = 100;
        var rate = new TokenRate(() => now);
        for (int i = 0; i < 10; i++) rate.Add();
        Assert.Equal(10.0 / TokenRate.WindowSeconds, rate.PerSecond);   // the second under way counts at once
        now = 101;
        for (int i = 0; i < 5; i++) rate.Add();
        Assert.Equal(15.0 / TokenRate.WindowSeconds, rate.PerSecond);
        now = 100 + TokenRate.WindowSeconds;   // second 100 has left the window
        Assert.Equal(5.0 / TokenRate.WindowSeconds, rate.PerSecond);
        now = 101 + TokenRate.WindowSeconds + 1;   // a slot reused after the ring wraps starts from zero
        rate.Add();
        Assert.Equal(1.0 / TokenRate.WindowSeconds, rate.PerSecond);
        Assert.Equal(16, rate.Total);
    }
}
