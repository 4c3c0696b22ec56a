using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using TauCluster.Client;
using TauCluster.Grains;

namespace TauCluster.Http.Tests;

/// <summary>
/// Mutual TLS on the cluster's connections, with certificates from docker/make-dev-certs.sh: two silos join each
/// other, clients that present a certificate from the cluster's CA get in (the Orleans client with
/// <see cref="TauChatClient"/>, and <c>tau --cluster</c>), and clients without one, or with one from another CA, do not.
/// </summary>
public sealed class ClusterTlsTests : IAsyncLifetime
{
    private readonly string root = Path.Combine(Path.GetTempPath(), "tau-tls-tests", Guid.NewGuid().ToString("N"));
    private string Certs => Path.Combine(root, "certs");
    private string Rogue => Path.Combine(root, "rogue");

    public async Task InitializeAsync()
    {
        TestPaths.Require(File.Exists("/usr/bin/openssl"), "openssl");
        await MakeCertificates(Certs, "silo1", "silo2", "client");
        await MakeCertificates(Rogue, "client");   // the same names, another CA
    }

    public Task DisposeAsync()
    {
        try { Directory.Delete(root, recursive: true); } catch (DirectoryNotFoundException) { }
        return Task.CompletedTask;
    }

    private static async Task MakeCertificates(string directory, params string[] names)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(TestPaths.RepositoryRoot(), "docker", "make-dev-certs.sh"), directory }.Concat(names)) start.ArgumentList.Add(a);
        using var script = Process.Start(start)!;
        var errors = script.StandardError.ReadToEndAsync();
        await script.StandardOutput.ReadToEndAsync();
        await script.WaitForExitAsync();
        Assert.True(script.ExitCode == 0, await errors);
    }

    private (string Key, string Value)[] SiloTls(string name) =>
    [
        ("Tau:Tls:CertificateFile", Path.Combine(Certs, $"{name}.crt")),
        ("Tau:Tls:KeyFile", Path.Combine(Certs, $"{name}.key")),
        ("Tau:Tls:CaFile", Path.Combine(Certs, "ca.crt")),
    ];

    private static ClusterTlsOptions ClientTls(string directory) => new()
    {
        CertificateFile = Path.Combine(directory, "client.crt"),
        KeyFile = Path.Combine(directory, "client.key"),
        CaFile = Path.Combine(directory, "ca.crt"),
    };

    private static async Task<IHost> Client(SiloServer silo, ClusterTlsOptions? tls)
    {
        var cluster = silo.App.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<ClusterOptions>>().Value;
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Critical);
        builder.UseOrleansClient(client =>
        {
            client.UseStaticClustering(new IPEndPoint(IPAddress.Loopback, silo.GatewayPort));
            client.Configure<ClusterOptions>(o => (o.ClusterId, o.ServiceId) = (cluster.ClusterId, cluster.ServiceId));
            client.AddTauClient();
            if (tls is not null) client.UseTauTls(tls);
            client.UseConnectionRetryFilter((_, _) => Task.FromResult(false));   // refused is refused: no second try
        });
        builder.Services.AddChatClient(sp => new TauChatClient(sp.GetRequiredService<IClusterClient>(), SiloServer.Model));
        var host = builder.Build();
        try
        {
            await host.StartAsync().WaitAsync(TimeSpan.FromMinutes(1));
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    [SkippableFact]
    public async Task Silos_and_clients_with_certificates_from_the_clusters_ca_connect_and_no_one_else_does()
    {
        string clusterId = $"tls-{Guid.NewGuid():N}";
        await using var first = await SiloServer.Start([.. SiloTls("silo1"), ("Tau:ClusterId", clusterId)]);
        int primary = first.App.Services.GetRequiredService<ILocalSiloDetails>().SiloAddress.Endpoint.Port;
        await using var second = await SiloServer.Start([.. SiloTls("silo2"), ("Tau:ClusterId", clusterId), ("Tau:PrimarySiloPort", primary.ToString())]);

        using (var client = await Client(second, ClientTls(Certs)))
        {
            var management = client.Services.GetRequiredService<IClusterClient>().GetGrain<IManagementGrain>(0);
            Assert.Equal(2, (await management.GetHosts(onlyActive: true)).Count);   // the silos reached each other over TLS
            var chat = client.Services.GetRequiredService<IChatClient>();
            var reply = await chat.GetResponseAsync("over tls", new ChatOptions { MaxOutputTokens = 4, Seed = 3 });
            Assert.Equal(4, reply.Usage?.OutputTokenCount);
        }

        // Without a certificate, and with one the cluster's CA did not issue, the gateway lets no one in.
        await Assert.ThrowsAnyAsync<Exception>(() => Client(first, null));
        await Assert.ThrowsAnyAsync<Exception>(() => Client(first, ClientTls(Rogue)));
        // The silos go on serving those with the right certificate.
        using (var again = await Client(first, ClientTls(Certs)))
            Assert.True((await again.Services.GetRequiredService<IClusterClient>().GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true)).Count == 2);
    }

    [SkippableFact]
    public async Task Tau_reaches_a_tls_cluster_with_its_certificate_flags_and_is_refused_without_them()
    {
        await using var silo = await SiloServer.Start(SiloTls("silo1"));
        var cluster = silo.App.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<ClusterOptions>>().Value;
        string[] common = ["generate", "--cluster", $"127.0.0.1:{silo.GatewayPort}", "--cluster-id", cluster.ClusterId, "--service-id", cluster.ServiceId,
            "--model", SiloServer.Model, "--prompt", "secure", "--max-tokens", "3", "--seed", "5", "--json"];

        var (exit, stdout, stderr) = await Tau([.. common, "--tls-cert", Path.Combine(Certs, "client.crt"), "--tls-key", Path.Combine(Certs, "client.key"),
            "--tls-ca", Path.Combine(Certs, "ca.crt")]);
        Assert.True(exit == 0, stderr);
        Assert.Equal(3, System.Text.Json.JsonDocument.Parse(stdout).RootElement.GetProperty("ids").GetArrayLength());

        // The same from the environment, as a shell configured once would have it.
        (exit, stdout, stderr) = await Tau(common, new()
        {
            ["TAU_TLS_CERT"] = Path.Combine(Certs, "client.crt"), ["TAU_TLS_KEY"] = Path.Combine(Certs, "client.key"), ["TAU_TLS_CA"] = Path.Combine(Certs, "ca.crt"),
        });
        Assert.True(exit == 0, stderr);

        (exit, _, stderr) = await Tau(common);
        Assert.Equal(1, exit);
        Assert.StartsWith("tau: cannot reach the cluster at 127.0.0.1:", stderr, StringComparison.Ordinal);

        (exit, _, stderr) = await Tau([.. common, "--tls-cert", Path.Combine(Certs, "client.crt")]);
        Assert.Equal(1, exit);
        Assert.Contains("--tls-key (TAU_TLS_KEY) is required with TLS", stderr, StringComparison.Ordinal);
    }

    private async Task<(int Exit, string Stdout, string Stderr)> Tau(string[] args, Dictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        start.ArgumentList.Add(TestPaths.BuiltAssembly("Client", "tau.dll"));
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["TAU_HOME"] = Path.Combine(root, "home");
        foreach (var (k, v) in environment ?? []) start.Environment[k] = v;
        using var tau = Process.Start(start)!;
        var stdout = tau.StandardOutput.ReadToEndAsync();
        var stderr = tau.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await tau.WaitForExitAsync(timeout.Token);
        return (tau.ExitCode, await stdout, await stderr);
    }
}
