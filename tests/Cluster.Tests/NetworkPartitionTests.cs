using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using Xunit.Abstractions;

namespace TauCluster.Cluster.Tests;

/// <summary>
/// A real network, simulated: Redis, three silo processes and the <c>tau</c> client each in a network namespace of its
/// own, on a bridge the test makes (<see cref="NetworkNamespaces"/>). Twice the silo that hosts a session fails in the
/// middle of a generation, and the tokens must be the ones an uninterrupted generation with the same model, seed and
/// prompts gives in another session. Each session is made through the victim's own HTTP API, so that it lands there
/// (sessions prefer the silo that makes them); the generations run in <c>tau generate</c>, in the client's namespace.
/// <list type="bullet">
/// <item>First the silo is cut off: its cable out of the bridge (its veth's bridge end down), so that its packets vanish
/// without a reset, as on a real network. The client's call in flight waits for its response timeout (30 s, the
/// client's default). The survivors suspect the silo from missed probes and declare it dead after about 24 s (23 to 26 s
/// seen): a connection that carried traffic within the largest probe timeout times the missed probes allowed (8 s × 3
/// here) still proves a silo alive, whatever its probes say. The client's next try, about 32 s after the cut (63 s in
/// one run, when a second try timed out too), finds the session on a survivor, which rebuilds it from its last
/// checkpoint in Redis and regenerates the same tokens. The cut-off silo knows none of this (it cannot reach Redis
/// either) and runs on. When its link is back, a read of the membership table shows it dead and it stops itself
/// (Orleans' fatal "I have been told I am dead", a fail-fast exit, code 134): 3 to 40 s after the link returned in the
/// runs seen, though it reads the table every 5 s, because its Redis connection takes that long to recover. Until then
/// it is a zombie, and a write it made while cut off can still reach Redis; the etag check refuses a stale one, and an
/// activation that loses such a conflict goes and the client tries again (<see cref="WriteConflictTests"/>). Restarted,
/// as a supervisor (docker's restart policy) would, it joins as a new silo (a new generation on the same address), and
/// each silo lists three active silos again.</item>
/// <item>Then the rejoined silo serves a session and is killed with SIGKILL mid-generation. Its connections close at
/// once, but a call that a gateway had forwarded to it is lost with it, and the client waits for its 30 s response
/// timeout there too; its next try finds the session on a survivor.</item>
/// </list>
/// With Orleans' default membership timing a cut-off silo is declared dead only after about a minute (20 s × 3) and
/// finds itself dead up to a minute after it is back (the table refresh period), too slow for a test; the silos here
/// take <c>Orleans:Membership</c> options from configuration (Silo/TauSilo.cs): a 2 s probe timeout, a 5 s refresh.
/// The client keeps Orleans' defaults.
/// </summary>
public sealed class NetworkPartitionTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Model = "netns";   // no tokenizer: `tau generate` streams the ids, "3,17,…", as they come
    private const int Tokens = 1000;        // seconds of generation on this model: a failure lands in the middle
    private const int FaultAfter = 40;      // ids the client has received when the silo fails
    private const int SiloPort = 11111, GatewayPort = 30000, HttpPort = 8080, RedisPort = 6379;   // each namespace has ports of its own
    private static readonly string[] Sampling = ["--temperature", "0.9", "--top-k", "40", "--top-p", "0.95", "--seed", "21"];

    private readonly TestProcesses processes = new(output);
    private readonly TestWorld world = new();
    private readonly string clusterId = $"netns-{Guid.NewGuid():N}"[..18];
    private readonly Stopwatch clock = new();
    private NetworkNamespaces? network;

    private sealed class Silo(int index, NetworkNamespaces.Member member)
    {
        public int Index { get; } = index;
        public NetworkNamespaces.Member Member { get; } = member;
        public Process Process { get; set; } = null!;
        public StringBuilder Output { get; set; } = new();

        /// <summary>Its address as membership writes it (the dashboard's form), with the generation it is in now.</summary>
        public string? Current { get; set; }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        processes.Dispose();
        network?.Dispose();
        world.Dispose();
        return Task.CompletedTask;
    }

    private NetworkNamespaces Network => network!;
    private NetworkNamespaces.Member Client => Network["client"];
    private NetworkNamespaces.Member Redis => Network["redis"];

    private void Log(string line) => processes.Log($"[test {clock.Elapsed.TotalSeconds,6:F1} s] {line}");

    [SkippableFact]
    public async Task A_cut_off_or_killed_silo_changes_no_token_and_the_cut_off_silo_rejoins()
    {
        TestPaths.Require(NetworkNamespaces.Supported, "root and ip netns");
        var redisServer = TestPaths.RedisServer();
        TestPaths.Require(redisServer is not null, "redis-server");
        clock.Start();
        network = NetworkNamespaces.Create(["redis", "silo1", "silo2", "silo3", "client"], processes.Log);
        TauModel.CreateRandom(new ModelConfig(VocabSize: 256, NLayer: 6, NHead: 6, NKvHead: 2, NEmbd: 384, SequenceLen: 4096, Softcap: 15,
            Taumode: new TaumodeConfig(Mode: TaumodeKind.Median, Temperature: 0.05)), 11).Save(Path.Combine(world.Options.ModelsRoot!, Model));

        var (_, redisReady) = processes.Start(NetworkNamespaces.IpCommand, NetworkNamespaces.Exec(Redis, redisServer!,
            "--port", $"{RedisPort}", "--bind", Redis.Address, "--protected-mode", "no", "--save", "", "--appendonly", "no"),
            new Dictionary<string, string>(), "redis", readyLine: "Ready to accept connections");
        await redisReady.WaitAsync(TimeSpan.FromSeconds(20));
        var silos = Enumerable.Range(1, 3).Select(i => new Silo(i, Network[$"silo{i}"])).ToArray();
        await Task.WhenAll(silos.Select(StartSilo)).WaitAsync(TimeSpan.FromSeconds(120));
        await WaitForActive(silos, TimeSpan.FromSeconds(60));
        Log("three silos active");

        // The reference: one token after the first prompt, then a long reply to a second, never interrupted.
        var reference = $"ref-{Guid.NewGuid():N}";
        int[] first = Ids(await Tau("tau-ref", TimeSpan.FromSeconds(90), Generate(reference, "1,2,3", 1)));
        int[] uninterrupted = Ids(await Tau("tau-ref", TimeSpan.FromSeconds(120), Generate(reference, "4,5", Tokens)));
        Assert.Equal(Tokens, uninterrupted.Length);
        Log("reference generated");

        // The silo that hosts the session is cut off from the network mid-generation.
        var victim = silos[1];
        var survivors = silos.Where(s => s != victim).ToArray();
        var cutSession = await OpenOn(victim, "cut", first.Length);
        var generation = StartTau("tau-cut", Generate(cutSession, "4,5", Tokens));
        int received = await WaitForIds(generation, FaultAfter, TimeSpan.FromSeconds(90));
        Network.SetLink(victim.Member, up: false);
        var cut = Stopwatch.StartNew();
        var finishing = Finish(generation, TimeSpan.FromSeconds(180), cut);
        Log($"cut off silo{victim.Index} ({victim.Current}) after {received} of {Tokens} ids");
        Assert.InRange(received, FaultAfter, Tokens - 1);   // mid-generation

        // The survivors declare it dead; it cannot know: it runs on, cut off.
        await WaitUntil(async () =>
        {
            foreach (var s in survivors)
                if (await ActiveSilos(s) is not { } active || active.Contains(victim.Current)) return false;
            return true;
        }, TimeSpan.FromSeconds(120), $"the survivors declare silo{victim.Index} dead");
        Log($"silo{victim.Index} declared dead {cut.Elapsed.TotalSeconds:F1} s after the cut");

        // The client's next try, after its call to the silo timed out, found the session on a survivor, rebuilt from
        // its last checkpoint in Redis.
        Assert.Equal(uninterrupted, await finishing);
        var after = await Info(survivors[0], cutSession);
        Assert.Contains(after.Silo, survivors.Select(s => Session(s.Current!)));
        Assert.True(after.RebuiltTokens >= first.Length + 3, $"{after.RebuiltTokens} tokens replayed");
        Assert.Equal(first.Length + 5 + Tokens, after.Length);
        Assert.False(victim.Process.HasExited, "a cut-off silo cannot learn that it was declared dead");

        // Back on the network, it reads the table, finds itself dead and stops itself.
        Network.SetLink(victim.Member, up: true);
        var healed = Stopwatch.StartNew();
        int exitCode = await processes.Exit(victim.Process, TimeSpan.FromSeconds(150));
        Log($"silo{victim.Index} stopped itself (exit code {exitCode}) {healed.Elapsed.TotalSeconds:F1} s after its link came back");
        Assert.NotEqual(0, exitCode);
        lock (victim.Output) Assert.Contains("I have been told I am dead", victim.Output.ToString(), StringComparison.Ordinal);

        // Restarted, it joins as a new silo: three active silos again, as each of them sees it.
        string before = victim.Current!;
        await StartSilo(victim).WaitAsync(TimeSpan.FromSeconds(120));
        await WaitForActive(silos, TimeSpan.FromSeconds(60));
        Assert.NotEqual(before, victim.Current);
        Log($"silo{victim.Index} rejoined as {victim.Current}");

        // The rejoined silo serves a session, and is killed with SIGKILL mid-generation.
        var killed = victim;
        var killSession = await OpenOn(killed, "kill", first.Length);
        generation = StartTau("tau-kill", Generate(killSession, "4,5", Tokens));
        received = await WaitForIds(generation, FaultAfter, TimeSpan.FromSeconds(90));
        killed.Process.Kill(entireProcessTree: true);
        var kill = Stopwatch.StartNew();
        finishing = Finish(generation, TimeSpan.FromSeconds(180), kill);
        Log($"killed silo{killed.Index} ({killed.Current}) after {received} of {Tokens} ids");
        Assert.InRange(received, FaultAfter, Tokens - 1);
        Assert.Equal(uninterrupted, await finishing);
        after = await Info(survivors[0], killSession);
        Assert.Contains(after.Silo, survivors.Select(s => Session(s.Current!)));
        Assert.True(after.RebuiltTokens >= first.Length + 3, $"{after.RebuiltTokens} tokens replayed");   // from the checkpoint in Redis
        Assert.Equal(first.Length + 5 + Tokens, after.Length);
        Log("done");
    }

    /// <summary>A silo in its namespace, with quick membership timing (see the class comment); ready once it is an active member.</summary>
    private Task StartSilo(Silo silo)
    {
        var env = new Dictionary<string, string>
        {
            ["Tau__Clustering"] = "redis",
            ["Tau__Storage"] = "redis",
            ["Tau__Redis"] = $"{Redis.Address}:{RedisPort}",
            ["Tau__ClusterId"] = clusterId,
            ["Tau__ServiceId"] = clusterId,
            ["Tau__SiloPort"] = $"{SiloPort}",
            ["Tau__GatewayPort"] = $"{GatewayPort}",
            ["Tau__AdvertisedAddress"] = silo.Member.Address,
            ["Tau__ModelsRoot"] = world.Options.ModelsRoot!,
            ["Tau__DataDirectory"] = Path.Combine(world.Root, $"silo{silo.Index}"),
            ["Tau__CheckpointEvery"] = "4",
            ["ASPNETCORE_URLS"] = $"http://{silo.Member.Address}:{HttpPort}",
            ["Orleans__Membership__ProbeTimeout"] = "00:00:02",
            ["Orleans__Membership__TableRefreshTimeout"] = "00:00:05",
            ["Logging__LogLevel__Orleans.Runtime.MembershipService"] = "Information",   // suspicions, votes, deaths: in the test log
        };
        silo.Output = new StringBuilder();
        silo.Current = null;
        var (process, ready) = processes.Start(NetworkNamespaces.IpCommand,
            NetworkNamespaces.Exec(silo.Member, "dotnet", TestPaths.BuiltAssembly("Silo", "TauCluster.Silo.dll")),
            env, $"silo{silo.Index}", capture: silo.Output, readyLine: "Application started");
        silo.Process = process;
        return ready;
    }

    private string[] Generate(string session, string promptIds, int maxTokens) =>
        ["generate", "--model", Model, "--session", session, "--prompt-ids", promptIds, "--max-tokens", $"{maxTokens}", .. Sampling];

    /// <summary>The tau client, in the client's namespace, on the cluster; its standard output as it comes.</summary>
    private (Process Process, StringBuilder Stdout) StartTau(string name, string[] args)
    {
        var stdout = new StringBuilder();
        var (process, _) = processes.Start(NetworkNamespaces.IpCommand, NetworkNamespaces.Exec(Client, "dotnet",
            [TestPaths.BuiltAssembly("Client", "tau.dll"), .. args,
             "--cluster", $"redis://{Redis.Address}:{RedisPort}", "--cluster-id", clusterId, "--service-id", clusterId]),
            new Dictionary<string, string> { ["TAU_HOME"] = Path.Combine(world.Root, "cli") }, name, capture: stdout);
        return (process, stdout);
    }

    private async Task<string> Tau(string name, TimeSpan limit, string[] args)
    {
        var (process, stdout) = StartTau(name, args);
        Assert.Equal(0, await processes.Exit(process, limit));
        lock (stdout) return stdout.ToString();
    }

    private static int[] Ids(string stdout) => stdout.Trim().Split(',').Select(int.Parse).ToArray();

    /// <summary>Ids the client has printed whole: each but the last is followed by a comma.</summary>
    private static int Printed(StringBuilder stdout)
    {
        lock (stdout)
        {
            int commas = 0;
            for (int i = 0; i < stdout.Length; i++) if (stdout[i] == ',') commas++;
            return commas;
        }
    }

    private static async Task<int> WaitForIds((Process Process, StringBuilder Stdout) generation, int count, TimeSpan limit)
    {
        var waited = Stopwatch.StartNew();
        for (int n; (n = Printed(generation.Stdout)) < count; await Task.Delay(5))
        {
            Assert.False(generation.Process.HasExited, $"the client ended after {n} ids");
            Assert.True(waited.Elapsed < limit, $"{n} ids after {limit}");
        }
        return Printed(generation.Stdout);
    }

    /// <summary>
    /// The generation's ids once the client is done; on the way, the longest time in which no id came, to the log.
    /// Started right after a failure: <paramref name="sinceFailure"/> runs from it.
    /// </summary>
    private async Task<int[]> Finish((Process Process, StringBuilder Stdout) generation, TimeSpan limit, Stopwatch sinceFailure)
    {
        var exit = processes.Exit(generation.Process, limit);
        int last = Printed(generation.Stdout);
        TimeSpan lastAt = TimeSpan.Zero, longest = TimeSpan.Zero, longestFrom = TimeSpan.Zero;
        while (!exit.IsCompleted)
        {
            await Task.WhenAny(exit, Task.Delay(50));
            int n = Printed(generation.Stdout);
            if (n == last) continue;
            var now = sinceFailure.Elapsed;
            if (now - lastAt > longest) (longest, longestFrom) = (now - lastAt, lastAt);
            (last, lastAt) = (n, now);
        }
        Assert.Equal(0, await exit);
        Log($"no id came for {longest.TotalSeconds:F1} s, from {longestFrom.TotalSeconds:F1} s after the failure; the client ended {sinceFailure.Elapsed.TotalSeconds:F1} s after it");
        lock (generation.Stdout) return Ids(generation.Stdout.ToString());
    }

    /// <summary>
    /// A session with the first prompt and its first token, made through the silo's own HTTP API, so that it lands on
    /// that silo (sessions prefer the silo that makes them); checked there.
    /// </summary>
    private async Task<string> OpenOn(Silo silo, string tag, int tokens)
    {
        var session = $"{tag}-{Guid.NewGuid():N}";
        using (var http = NetworkNamespaces.HttpClientIn(Client, TimeSpan.FromSeconds(60)))
        {
            var body = new JsonObject
            {
                ["model"] = Model, ["prompt"] = new JsonArray(1, 2, 3), ["max_tokens"] = tokens, ["session"] = session,
                ["temperature"] = 0.9, ["top_k"] = 40, ["top_p"] = 0.95, ["seed"] = 21,   // as Sampling
            };
            using var response = await http.PostAsync($"http://{silo.Member.Address}:{HttpPort}/v1/completions",
                new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
            Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        }
        var info = await Info(silo, session);
        Assert.Equal(Session(silo.Current!), info.Silo);
        Assert.Equal(3 + tokens, info.Length);
        return session;
    }

    private sealed record SessionInfoJson(string Silo, int Length, int RebuiltTokens);

    /// <summary>The session as <paramref name="asker"/>'s HTTP API reports it (what `tau sessions info` prints).</summary>
    private async Task<SessionInfoJson> Info(Silo asker, string session)
    {
        using var http = NetworkNamespaces.HttpClientIn(Client, TimeSpan.FromSeconds(60));
        var info = JsonNode.Parse(await http.GetStringAsync($"http://{asker.Member.Address}:{HttpPort}/v1/sessions/{session}"))!;
        return new(info["silo"]!.GetValue<string>(), info["length"]!.GetValue<int>(), info["rebuilt_tokens"]!.GetValue<int>());
    }

    /// <summary>A silo address as a session reports it (S10.0.0.2:11111:123) from membership's (10.0.0.2:11111@123).</summary>
    private static string Session(string membership) => "S" + membership.Replace('@', ':');

    /// <summary>
    /// The silos <paramref name="asker"/> lists as active (the dashboard's view of the membership table), or null when
    /// it does not answer in time (its dashboard grain may live on a silo that is gone).
    /// </summary>
    private async Task<string[]?> ActiveSilos(Silo asker)
    {
        try
        {
            using var http = NetworkNamespaces.HttpClientIn(Client, TimeSpan.FromSeconds(5));
            var counters = JsonNode.Parse(await http.GetStringAsync($"http://{asker.Member.Address}:{HttpPort}/dashboard/DashboardCounters"))!;
            return counters["hosts"]!.AsArray().Where(h => h!["status"]!.GetValue<string>() == "Active")
                .Select(h => h!["siloAddress"]!.GetValue<string>()).ToArray();
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
        {
            return null;
        }
    }

    /// <summary>Until every silo lists exactly the three as active; each silo's <see cref="Silo.Current"/> address from it.</summary>
    private async Task WaitForActive(Silo[] silos, TimeSpan limit) => await WaitUntil(async () =>
    {
        foreach (var asker in silos)
        {
            if (await ActiveSilos(asker) is not { Length: 3 } active) return false;
            foreach (var s in silos)
            {
                if (active.SingleOrDefault(a => a.StartsWith($"{s.Member.Address}:", StringComparison.Ordinal)) is not { } address) return false;
                s.Current = address;
            }
        }
        return true;
    }, limit, "three active silos, as each of them sees it");

    private static async Task WaitUntil(Func<Task<bool>> condition, TimeSpan limit, string what)
    {
        var waited = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(waited.Elapsed < limit, $"not {what} within {limit}");
            await Task.Delay(250);
        }
    }
}
