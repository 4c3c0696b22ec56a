using System.Net;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Orleans.Placement;
using Orleans.Runtime.Hosting;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Serialization;
using Orleans.Storage;
using StackExchange.Redis;
using TauCluster.Engine;

namespace TauCluster.Grains;

public static class TauHosting
{
    /// <summary>
    /// The grains' services (model store, domain copies, local caches) and the "tau" grain storage. Clustering is
    /// separate (<see cref="UseTauClustering"/>) so that TestingHost, the silo and the embedded client choose their own.
    /// </summary>
    public static ISiloBuilder AddTauServices(this ISiloBuilder builder, TauClusterOptions options)
    {
        TauClusterOptionsValidator.ThrowIfInvalid(options);
        var services = builder.Services;
        services.AddSingleton(Options.Create(options));
        services.AddSingleton<ModelStore>();
        services.AddSingleton<DomainStore>();
        services.AddSingleton<ManifoldCatalog>();
        services.AddSingleton<LocalSessions>();
        services.AddSingleton<LocalShards>();
        services.AddPlacementDirector<AwayFromCallerPlacement, AwayFromCallerPlacementDirector>();
        services.AddPlacementDirector<SiloPinnedPlacement, SiloPinnedPlacementDirector>();
        services.AddMetrics();   // the IMeterFactory TauMetrics' meter comes from (hosts register it already; this makes sure)
        services.AddSingleton<TauMetrics>();
        // Opened here, while the silo is built, so that a configured device that is missing stops it at start.
        var compute = new ComputeWorkers(options.MaxBatch, device: ComputeDevice.Parse(options.Device), deviceCacheBytes: options.DeviceCacheBytes);
        services.AddSingleton(_ => compute);   // made by a factory, so that the container disposes it
        builder.UseSiloMetadata(DeviceMetadata(builder, compute));
        services.AddPlacementFilter<AcceleratorPlacementFilterStrategy, AcceleratorPlacementFilterDirector>(ServiceLifetime.Singleton);
        services.AddTauErrors();
        builder.AddActivityPropagation();   // a request's trace continues through its grain calls, across silos

        switch (options.Storage)
        {
            case "memory":
                builder.AddMemoryGrainStorage(TauStorage.Name);
                break;
            case "file":
                var directory = Path.Combine(options.DataDirectory, "state");
                services.AddGrainStorage(TauStorage.Name, (sp, _) => new FileGrainStorage(directory, sp.GetRequiredService<Serializer>()));
                break;
            case "redis":
                // Orleans' binary format: the provider's default is Newtonsoft JSON, one text number per token id.
                builder.AddRedisGrainStorage(TauStorage.Name, ob => ob.Configure<Serializer>((o, serializer) =>
                {
                    o.ConfigurationOptions = ConfigurationOptions.Parse(options.Redis);
                    o.GrainStorageSerializer = new OrleansGrainStorageSerializer(serializer);
                }));
                break;
            default:
                throw new InvalidOptionsException($"Tau:Storage = '{options.Storage}' must be memory, file or redis");
        }
        return builder;
    }

    /// <summary>
    /// The silo's metadata as configured (<c>Orleans:Metadata</c>), with its device: what placement filtering reads to
    /// put sessions on silos with accelerators.
    /// </summary>
    private static Dictionary<string, string> DeviceMetadata(ISiloBuilder builder, ComputeWorkers compute)
    {
        var metadata = builder.Configuration.GetSection("Orleans:Metadata").Get<Dictionary<string, string>>() ?? [];
        metadata[AcceleratorPlacementFilterDirector.DeviceKey] = compute.Device.Name;
        if (compute.Accelerator is { } accelerator) metadata[AcceleratorPlacementFilterDirector.DeviceNameKey] = accelerator.Name;
        return metadata;
    }

    /// <summary>
    /// Clustering from the options: localhost (one machine) or redis (membership in Redis); with <c>Tau:Tls</c>, every
    /// silo and gateway connection is mutual TLS against the cluster's CA.
    /// </summary>
    public static ISiloBuilder UseTauClustering(this ISiloBuilder builder, TauClusterOptions options)
    {
        if (options.Tls.Enabled)
        {
            var (certificate, authority) = ClusterTls.Load(options.Tls);
            builder.UseTls(certificate, tls => ClusterTls.Configure(tls, certificate, authority));
        }
        switch (options.Clustering)
        {
            case "localhost":
                var primary = options.PrimarySiloPort is { } port ? new IPEndPoint(IPAddress.Loopback, port) : null;
                builder.UseLocalhostClustering(options.SiloPort, options.GatewayPort, primary, options.ServiceId, options.ClusterId);
                break;
            case "redis":
                builder.Configure<ClusterOptions>(c => (c.ClusterId, c.ServiceId) = (options.ClusterId, options.ServiceId));
                builder.UseRedisClustering(options.Redis);
                var address = options.AdvertisedAddress is { Length: > 0 } a ? ResolveAddress(a) : IPAddress.Loopback;
                builder.ConfigureEndpoints(address, options.SiloPort, options.GatewayPort, listenOnAnyHostAddress: true);
                break;
            default:
                throw new InvalidOptionsException($"Tau:Clustering = '{options.Clustering}' must be localhost or redis");
        }
        return builder;
    }

    private static IPAddress ResolveAddress(string hostOrAddress) =>
        IPAddress.TryParse(hostOrAddress, out var ip) ? ip
            : Dns.GetHostAddresses(hostOrAddress).FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
              ?? throw new InvalidOptionsException($"Tau:AdvertisedAddress '{hostOrAddress}' does not resolve to an IPv4 address");
}
