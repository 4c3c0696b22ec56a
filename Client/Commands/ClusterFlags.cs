using System.CommandLine;
using TauCluster.Engine;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// Where a command's sessions run: an embedded one-silo cluster in this process (on <c>--device</c>), or a running
/// cluster's gateways (<c>--cluster</c>, with mutual TLS). One instance per command: a command owns its options.
/// </summary>
internal sealed class ClusterFlags
{
    private readonly Option<string> cluster = Text("--cluster", "HOST:PORT[,HOST:PORT…]|redis://HOST:PORT",
        "a running cluster's gateways, or its Redis membership table [default: an embedded one-silo cluster in this process]");

    private readonly Option<string> clusterId = Text("--cluster-id", "ID", "the cluster's ClusterId (with --cluster)", "taucluster");

    private readonly Option<string> serviceId = Text("--service-id", "ID", "the cluster's ServiceId (with --cluster)", "taucluster");

    private readonly Option<string> device = DeviceOption("the embedded silo's device (a cluster's silos choose theirs)");

    /// <summary>Mutual TLS to the gateways, each defaulting to its environment variable so that a shell configured once reaches a TLS cluster every time.</summary>
    private readonly Option<string> tlsCert = Text("--tls-cert", "FILE", "client certificate for mutual TLS to the gateways [default: $TAU_TLS_CERT]");

    private readonly Option<string> tlsKey = Text("--tls-key", "FILE", "the client certificate's private key [default: $TAU_TLS_KEY]");

    private readonly Option<string> tlsCa = Text("--tls-ca", "FILE", "the cluster's certificate authority [default: $TAU_TLS_CA]");

    private Option[] TlsOptions => [tlsCert, tlsKey, tlsCa];

    public void AddTo(Command command)
    {
        foreach (var option in (Option[])[cluster, clusterId, serviceId, device, .. TlsOptions]) command.Options.Add(option);
    }

    public sealed record OpenCluster(ClusterConnection Connection, string Model, string? Domain) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Connection.DisposeAsync();
    }

    /// <summary>
    /// Embedded: a model or domain given as a directory is configured on the embedded silo under its folder name,
    /// so that sessions still name it (a silo never reads a path from a request). Remote: names only.
    /// </summary>
    public async Task<OpenCluster> Connect(ParseResult result, string model, string? domain, CancellationToken cancellation, bool resolveModel = true)
    {
        if (result.GetValue(cluster) is { } address)
        {
            if (result.Given(device))
                throw new UsageException("--device chooses the embedded silo's device; a cluster's silos choose theirs (Tau:Device)");
            foreach (var (option, value) in new[] { ("--model", model), ("--domain", domain) })
                if (value is not null && !Names.IsValid(value))
                    throw new UsageException($"with --cluster, {option} must name a {option[2..]} configured on the silos, not a path ('{value}')");
            var remote = await ClusterConnection.Connect(address, result.GetValue(clusterId)!, result.GetValue(serviceId)!, TlsFrom(result), cancellation);
            return new OpenCluster(remote, model, domain);
        }

        if (TlsOptions.FirstOrDefault(result.Given) is { } tlsFlag)
            throw new UsageException($"{tlsFlag.Name} applies to a cluster's gateways (--cluster); the embedded silo takes no connections");
        var options = EmbeddedOptions();
        options.Device = result.Device(device).Name;
        if (resolveModel)
        {
            model = LocalName("model", model, options.Models);
            if (domain is not null) domain = LocalName("domain", domain, options.Manifolds);
            if (model == ModelStore.PaperName) PaperModel.EnsureCreated(options.DataDirectory, message => Progress(message));
        }
        Progress("starting an embedded silo …");
        return new OpenCluster(await ClusterConnection.StartEmbedded(options, cancellation), model, domain);
    }

    private ClusterTlsOptions TlsFrom(ParseResult result) => new()
    {
        CertificateFile = result.GetValue(tlsCert) ?? Environment.GetEnvironmentVariable("TAU_TLS_CERT"),
        KeyFile = result.GetValue(tlsKey) ?? Environment.GetEnvironmentVariable("TAU_TLS_KEY"),
        CaFile = result.GetValue(tlsCa) ?? Environment.GetEnvironmentVariable("TAU_TLS_CA"),
    };

    /// <summary>How the errors of <see cref="ClusterTls.Load"/> name the settings: by the flags a user of tau gives.</summary>
    public static string TlsFlag(string setting) => setting switch
    {
        nameof(ClusterTlsOptions.CertificateFile) => "--tls-cert (TAU_TLS_CERT)",
        nameof(ClusterTlsOptions.KeyFile) => "--tls-key (TAU_TLS_KEY)",
        _ => "--tls-ca (TAU_TLS_CA)",
    };
}
