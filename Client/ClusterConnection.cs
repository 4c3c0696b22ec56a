using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using TauCluster.Grains;

namespace TauCluster.Client;

/// <summary>
/// Where <c>tau</c> runs its sessions: an embedded one-silo cluster in this process (the default), or a running
/// cluster reached as an Orleans client with <c>--cluster</c>.
/// </summary>
public sealed class ClusterConnection : IAsyncDisposable
{
    private readonly IHost host;

    private ClusterConnection(IHost host, IGrainFactory grains, bool embedded)
    {
        this.host = host;
        Grains = grains;
        Sessions = new TauSessionClient(grains);
        Embedded = embedded;
    }

    public IGrainFactory Grains { get; }
    public TauSessionClient Sessions { get; }
    public bool Embedded { get; }

    /// <summary>The embedded silo's compute workers (what a bench reads its passes from); null for a remote cluster.</summary>
    public Engine.ComputeWorkers? Compute => Embedded ? host.Services.GetRequiredService<Engine.ComputeWorkers>() : null;

    /// <summary>
    /// An in-process silo with sessions in files under the data directory, so that <c>tau sessions …</c> and a later
    /// <c>--session</c> find them again. Its ports are picked free, so several <c>tau</c> processes can run at once.
    /// </summary>
    public static async Task<ClusterConnection> StartEmbedded(TauClusterOptions options, CancellationToken cancellation)
    {
        options.Storage = "file";
        options.SiloPort = FreePort();
        options.GatewayPort = FreePort();
        var builder = Host.CreateApplicationBuilder();
        // No logs: the silo serves this one command, and whatever fails in it fails the command's call, which tau
        // reports as its one error line. The silo's own log of it would only repeat it, over many lines and with stack traces.
        builder.Logging.ClearProviders();
        builder.UseOrleans(silo => silo.UseTauClustering(options).AddTauServices(options));
        var host = builder.Build();
        await host.StartAsync(cancellation);
        return new ClusterConnection(host, host.Services.GetRequiredService<IGrainFactory>(), embedded: true);
    }

    /// <summary>
    /// An Orleans client of running silos: <c>HOST:PORT[,HOST:PORT…]</c> gateways, or <c>redis://HOST:PORT</c> for the
    /// membership table the silos keep in Redis; with <paramref name="tls"/> configured, over mutual TLS.
    /// </summary>
    public static async Task<ClusterConnection> Connect(string cluster, string clusterId, string serviceId, ClusterTlsOptions tls, CancellationToken cancellation)
    {
        var builder = Host.CreateApplicationBuilder();
        QuietLogging(builder.Logging);
        builder.UseOrleansClient(client =>
        {
            client.UseTauTls(tls, ClusterFlags.TlsFlag);
            if (cluster.StartsWith("redis://", StringComparison.OrdinalIgnoreCase))
                client.UseRedisClustering(cluster["redis://".Length..]);
            else
                client.UseStaticClustering(cluster.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(ParseEndpoint).ToArray());
            client.Configure<ClusterOptions>(o => (o.ClusterId, o.ServiceId) = (clusterId, serviceId));
            client.AddTauClient();
            int attempts = 0;   // a person is waiting: a few tries, not Orleans' default of fifteen with growing pauses
            client.UseConnectionRetryFilter(async (_, ct) =>
            {
                if (++attempts > 3) return false;
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
                return true;
            });
        });
        var host = builder.Build();
        try
        {
            await host.StartAsync(cancellation);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            host.Dispose();
            throw new TauException($"cannot reach the cluster at {cluster}: {e.Message}", e);
        }
        return new ClusterConnection(host, host.Services.GetRequiredService<IClusterClient>(), embedded: false);
    }

    private static IPEndPoint ParseEndpoint(string text)
    {
        int colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], out int port) || port is < 1 or > 65535)
            throw new UsageException($"--cluster '{text}' must be HOST:PORT (a silo's gateway) or redis://HOST:PORT");
        var hostName = text[..colon];
        if (IPAddress.TryParse(hostName, out var ip)) return new IPEndPoint(ip, port);
        try
        {
            return new IPEndPoint(Dns.GetHostAddresses(hostName).First(a => a.AddressFamily == AddressFamily.InterNetwork), port);
        }
        catch (Exception e) when (e is SocketException or InvalidOperationException)
        {
            throw new UsageException($"--cluster host '{hostName}' does not resolve to an IPv4 address");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Warnings and errors only, and on stderr: stdout carries the generated text or the JSON result.</summary>
    private static void QuietLogging(ILoggingBuilder logging)
    {
        logging.ClearProviders();
        logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        logging.SetMinimumLevel(LogLevel.Warning);
        logging.AddFilter("Orleans", LogLevel.Error);
        logging.AddFilter("Microsoft", LogLevel.Error);
        logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);   // start-up failures become one tau error line
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await host.StopAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
        }
        host.Dispose();
    }
}
