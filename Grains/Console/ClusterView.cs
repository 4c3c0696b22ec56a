namespace TauCluster.Grains;

/// <summary>
/// The cluster as a console shows it: every active silo's view of itself, asked in parallel, and the domains the
/// cluster knows with their spectra and the sessions that use each.
/// </summary>
public static class ClusterView
{
    /// <summary>How long a silo may take to describe itself before the view lists it as unreachable.</summary>
    public static readonly TimeSpan SiloTimeout = TimeSpan.FromSeconds(5);

    /// <summary>Each active silo's view, by address; a silo that does not answer in time is listed with its error.</summary>
    public static async Task<SiloView[]> Silos(IGrainFactory grains)
    {
        var hosts = await grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true);
        return await Task.WhenAll(hosts.Keys.OrderBy(s => s.ToString(), StringComparer.Ordinal).Select(async silo =>
        {
            try
            {
                return await grains.GetGrain<ISiloViewGrain>(silo.ToParsableString()).GetView().WaitAsync(SiloTimeout);
            }
            catch (Exception e) when (e is TimeoutException or SiloUnavailableException or OrleansException)
            {
                return SiloView.Unreachable(silo.ToString(), e.Message);
            }
        }));
    }

    /// <summary>
    /// The domains under the manifolds root, configured by name, or registered, each with its spectrum and the live
    /// sessions in <paramref name="silos"/> that use it. A manifold that does not load is listed with its error.
    /// </summary>
    public static async Task<DomainView[]> Domains(IGrainFactory grains, ManifoldCatalog catalog, IReadOnlyCollection<SiloView> silos)
    {
        var names = catalog.KnownNames().Union(await grains.GetGrain<IDomainRegistryGrain>(0).GetNames()).Order(StringComparer.Ordinal);
        var users = silos.SelectMany(s => s.Sessions).Where(s => s.Domain is not null).ToLookup(s => s.Domain!, s => s.Session);
        return await Task.WhenAll(names.Select(async name =>
        {
            var domain = grains.GetGrain<IDomainGrain>(name);
            try
            {
                return new DomainView(name, await domain.GetInfo(), await domain.GetSpectrum(), users[name].Order(StringComparer.Ordinal).ToArray(), null);
            }
            catch (Exception e) when (e is TauException or IOException)
            {
                return new DomainView(name, null, null, users[name].ToArray(), e.Message);
            }
        }));
    }
}

/// <summary>A domain as the console lists it: what it is (none if it failed to load, with the error), its spectrum, and the sessions using it.</summary>
public sealed record DomainView(string Name, DomainInfo? Info, DomainSpectrum? Spectrum, string[] Sessions, string? Error);
