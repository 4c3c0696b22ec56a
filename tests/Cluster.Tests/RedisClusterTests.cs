using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using TauCluster.Grains;
using Xunit.Abstractions;

namespace TauCluster.Cluster.Tests;

/// <summary>
/// Real processes: a redis-server for membership and grain state, two Silo processes, and a client. The silo that
/// hosts a session is killed with SIGKILL in the middle of a generation; the output must not change.
/// </summary>
public sealed class RedisClusterTests(ITestOutputHelper output) : IAsyncLifetime
{
    private readonly TestProcesses processes = new(output);
    private readonly TestWorld world = new();
    private readonly string clusterId = $"redis-test-{Guid.NewGuid():N}"[..24];
    private int redisPort;

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        processes.Dispose();
        world.Dispose();
        return Task.CompletedTask;
    }

    private readonly System.Text.StringBuilder cliOutput = new();

    /// <summary>A silo process; it is ready when its host has started, which is after its silo has joined the cluster as active.</summary>
    private (Process Process, int SiloPort, Task Ready) StartSilo(int index)
    {
        var (process, siloPort, _, ready) = StartSiloWithHttp(index);
        return (process, siloPort, ready);
    }

    private (Process Process, int SiloPort, int HttpPort, Task Ready) StartSiloWithHttp(int index)
    {
        int siloPort = TestPaths.FreePort(), gatewayPort = TestPaths.FreePort(), httpPort = TestPaths.FreePort();
        var env = new Dictionary<string, string>
        {
            ["Tau__Clustering"] = "redis",
            ["Tau__Storage"] = "redis",
            ["Tau__Redis"] = $"127.0.0.1:{redisPort}",
            ["Tau__ClusterId"] = clusterId,
            ["Tau__ServiceId"] = clusterId,
            ["Tau__SiloPort"] = siloPort.ToString(),
            ["Tau__GatewayPort"] = gatewayPort.ToString(),
            ["Tau__ModelsRoot"] = world.Options.ModelsRoot!,
            ["Tau__DataDirectory"] = Path.Combine(world.Root, $"silo{index}"),
            ["Tau__CheckpointEvery"] = "4",
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{httpPort}",
        };
        var (process, ready) = processes.Start("dotnet", [TestPaths.BuiltAssembly("Silo", "TauCluster.Silo.dll")], env, $"silo{index}",
            readyLine: "Application started");   // Microsoft.Hosting.Lifetime, once every hosted service (the silo too) has started
        return (process, siloPort, httpPort, ready);
    }

    private async Task StartRedis()
    {
        var redis = TestPaths.RedisServer();
        TestPaths.Require(redis is not null, "redis-server");
        redisPort = TestPaths.FreePort();
        var (_, redisReady) = processes.Start(redis!, ["--port", redisPort.ToString(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            new Dictionary<string, string>(), "redis", readyLine: "Ready to accept connections");
        await redisReady.WaitAsync(TimeSpan.FromSeconds(20));
    }

    /// <summary>An Orleans client of the cluster in Redis, once it sees <paramref name="silos"/> active silos.</summary>
    private async Task<IHost> ConnectClient(int silos)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.UseOrleansClient(client =>
        {
            client.UseRedisClustering($"127.0.0.1:{redisPort}");
            client.Configure<ClusterOptions>(o => (o.ClusterId, o.ServiceId) = (clusterId, clusterId));
            client.AddTauClient();
        });
        var host = builder.Build();
        await host.StartAsync();
        var management = host.Services.GetRequiredService<IClusterClient>().GetGrain<IManagementGrain>(0);
        // Every silo is active in the table; each learns of the others through membership gossip or its next read of the
        // table, and nothing outside a silo can wait for that: a bounded poll, which the first read passes almost always.
        for (int attempt = 1; (await TauSessionClient.Retry(() => management.GetHosts(onlyActive: true), default)).Count < silos; attempt++)
        {
            Assert.True(attempt < 100, $"the silos did not all see the cluster of {silos}");
            await Task.Delay(200);
        }
        return host;
    }

    [SkippableFact]
    public async Task Sigkilled_silo_loses_no_session_and_changes_no_token()
    {
        await StartRedis();
        var silos = new[] { StartSilo(1), StartSilo(2) };
        await Task.WhenAll(silos.Select(s => s.Ready)).WaitAsync(TimeSpan.FromSeconds(90));
        using var host = await ConnectClient(silos.Length);
        var grains = host.Services.GetRequiredService<IClusterClient>();
        var sessions = new TauSessionClient(grains);
        var spec = new SessionSpec(TestWorld.Tiny, null, new SamplingSettings(0.9, 40, 0.95, 21));

        async Task<(string Id, int Length)> Begin()
        {
            var id = $"r-{Guid.NewGuid():N}";
            await sessions.Open(id, spec);
            return (id, (await sessions.Append(id, PromptInput.FromText("two processes, one conversation"))).Length);
        }

        // `tau --cluster redis://…` is a client of the same cluster and gets the tokens the client library gets.
        var (cli, _) = processes.Start("dotnet", [TestPaths.BuiltAssembly("Client", "tau.dll"), "generate", "--cluster", $"redis://127.0.0.1:{redisPort}",
            "--cluster-id", clusterId, "--service-id", clusterId, "--model", TestWorld.Tiny, "--prompt", "from the command line",
            "--max-tokens", "12", "--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "21", "--json"],
            new Dictionary<string, string> { ["TAU_HOME"] = Path.Combine(world.Root, "cli") }, "tau", capture: cliOutput);
        Assert.Equal(0, await processes.Exit(cli, TimeSpan.FromSeconds(120)));
        var fromCli = System.Text.Json.JsonDocument.Parse(cliOutput.ToString()).RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var reference = $"r-{Guid.NewGuid():N}";
        await sessions.Open(reference, spec);
        await sessions.Append(reference, PromptInput.FromText("from the command line"));
        var fromLibrary = new List<int>();
        await foreach (var t in sessions.Generate(reference, 12)) fromLibrary.Add(t.Id);
        Assert.Equal(fromLibrary, fromCli);

        var uninterrupted = new List<int>();
        await foreach (var t in sessions.Generate((await Begin()).Id, 48)) uninterrupted.Add(t.Id);

        var (id, start) = await Begin();
        string hostSilo = (await sessions.Info(id)).Silo;
        var victim = Assert.Single(silos, s => hostSilo.Contains($":{s.SiloPort}:", StringComparison.Ordinal));   // it hosts the session
        var resumes = new List<StreamResume>();
        sessions.Resuming += resumes.Add;
        var received = new List<int>();
        await foreach (var t in sessions.Generate(id, 48))
        {
            received.Add(t.Id);
            if (received.Count == 10)
            {
                Assert.Empty(resumes);
                victim.Process.Kill(entireProcessTree: true);   // SIGKILL: no goodbye to the cluster
                output.WriteLine($"killed the silo on port {victim.SiloPort} after 10 tokens");
            }
        }

        Assert.True(victim.Process.HasExited);
        Assert.Equal(uninterrupted, received);
        // The stream was cut: the client lost it after the tokens it had, and requested the rest again, from the survivor.
        Assert.NotEmpty(resumes);
        Assert.All(resumes, r => Assert.Equal(id, r.Session));
        Assert.InRange(resumes[0].NextPosition, start + 10, start + 47);
        Assert.True(TauSessionClient.IsTransient(resumes[0].Failure, default), resumes[0].Failure.ToString());
        var survivor = silos.Single(s => s != victim);
        var after = await sessions.Info(id);
        Assert.NotEqual(hostSilo, after.Silo);
        Assert.Contains($":{survivor.SiloPort}:", after.Silo, StringComparison.Ordinal);
        Assert.True(after.RebuiltTokens >= start, $"{after.RebuiltTokens} tokens replayed");   // the survivor rebuilt the session from Redis
        var tokens = await sessions.Session(id).GetTokens();
        Assert.Equal(received, tokens[^48..]);   // persisted in Redis: nothing lost
        await host.StopAsync();

        // The survivor shuts down cleanly on SIGTERM.
        using (var term = Process.Start("kill", ["-TERM", survivor.Process.Id.ToString()])) await term.WaitForExitAsync();
        using var shutdown = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await survivor.Process.WaitForExitAsync(shutdown.Token);
        Assert.Equal(0, survivor.Process.ExitCode);
    }

    /// <summary>
    /// SIGTERM to the silo that hosts a session, in the middle of its generation (its caller has the first 10 tokens and
    /// reads no further for now): the silo drains. Its readiness fails and its API turns new generations away with 503
    /// and Retry-After, while the generation under way runs to its end there, untouched; then the silo leaves the cluster
    /// with exit code 0, and the session's next generation runs on the other silo with the tokens an undisturbed
    /// session gets.
    /// </summary>
    [SkippableFact]
    public async Task Sigterm_drains_the_silo_and_its_sessions_continue_elsewhere_with_the_same_tokens()
    {
        await StartRedis();
        var silos = new[] { StartSiloWithHttp(1), StartSiloWithHttp(2) };
        await Task.WhenAll(silos.Select(s => s.Ready)).WaitAsync(TimeSpan.FromSeconds(90));
        using var host = await ConnectClient(silos.Length);
        var sessions = new TauSessionClient(host.Services.GetRequiredService<IClusterClient>());
        var spec = new SessionSpec(TestWorld.Tiny, null, new SamplingSettings(0.9, 40, 0.95, 33));

        async Task<string> Begin()
        {
            var id = $"d-{Guid.NewGuid():N}";
            await sessions.Open(id, spec);
            await sessions.Append(id, PromptInput.FromText("a silo that is told to stop"));
            return id;
        }
        async Task<List<int>> Generate(string id, int count)
        {
            var ids = new List<int>();
            await foreach (var t in sessions.Generate(id, count)) ids.Add(t.Id);
            return ids;
        }

        var reference = await Begin();
        var (first, then) = (await Generate(reference, 40), await Generate(reference, 20));

        var id = await Begin();
        string hostSilo = (await sessions.Info(id)).Silo;
        var victim = Assert.Single(silos, s => hostSilo.Contains($":{s.SiloPort}:", StringComparison.Ordinal));
        var resumes = new List<StreamResume>();
        sessions.Resuming += resumes.Add;
        var received = new List<int>();
        await using (var stream = sessions.Generate(id, 40).GetAsyncEnumerator())
        {
            while (received.Count < 10 && await stream.MoveNextAsync()) received.Add(stream.Current.Id);
            using (var term = Process.Start("kill", ["-TERM", victim.Process.Id.ToString()])) await term.WaitForExitAsync();

            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{victim.HttpPort}"), Timeout = TimeSpan.FromSeconds(30) };
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while ((await http.GetAsync("/readyz")).StatusCode != System.Net.HttpStatusCode.ServiceUnavailable)
            {
                Assert.True(DateTime.UtcNow < deadline, "the silo's readiness did not fail after SIGTERM");
                await Task.Delay(100);
            }
            using var refused = await http.PostAsync("/v1/completions",
                new StringContent("""{"model": "tiny", "prompt": "too late", "max_tokens": 2}""", System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, refused.StatusCode);
            Assert.NotNull(refused.Headers.RetryAfter);
            Assert.Contains("\"draining\"", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.False(victim.Process.HasExited, "the silo left under a running generation");

            while (await stream.MoveNextAsync()) received.Add(stream.Current.Id);
        }
        Assert.Equal(first, received);
        Assert.Empty(resumes);   // it ran to its end on the draining silo: nothing was cut, nothing requested again

        using (var exit = new CancellationTokenSource(TimeSpan.FromSeconds(90)))
            await victim.Process.WaitForExitAsync(exit.Token);
        Assert.Equal(0, victim.Process.ExitCode);

        Assert.Equal(then, await Generate(id, 20));
        var after = await sessions.Info(id);
        Assert.NotEqual(hostSilo, after.Silo);
        Assert.Contains($":{silos.Single(s => s != victim).SiloPort}:", after.Silo, StringComparison.Ordinal);
    }
}
