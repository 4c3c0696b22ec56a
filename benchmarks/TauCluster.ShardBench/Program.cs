using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using TauCluster.Benchmarks;
using TauCluster.Engine;
using TauCluster.Grains;

// Context shards end to end, loopback only: three silo processes of one cluster. Silo 0 has a cache budget, so a long
// session opened there moves its oldest segments to shards on silos 1 and 2; silo 1 keeps sessions whole. The same
// session (same ids, greedy) runs on each, one after the other, and its decode steps are timed from the client; the
// sharded silo's counters give the bytes its shard queries moved per token and layer, and every silo's gauges the
// bytes it holds. Past --compare-context (a length one silo holds whole), the whole and sharded runs compare tokens at
// that length and one more sharded run goes to --context; --baseline-context times the same model short. Prints one
// JSON object.
//   dotnet run -c Release --project benchmarks/TauCluster.ShardBench -- [--context 65536] [--tokens 64] [--warmup 16] [--budget-mb 200]
//       [--compare-context N (default: --context)] [--baseline-context 1024]
//   a million tokens (benchmarks/README.md gives the GC settings it needs): -- --context 1048576 --compare-context 147456 --budget-mb 1300

int context = Option("--context", 65536), tokens = Option("--tokens", 64), warmup = Option("--warmup", 16), budgetMb = Option("--budget-mb", 200);
int compare = Math.Min(context, Option("--compare-context", context)), baseline = Option("--baseline-context", 1024);
const int PromptPiece = 65536;   // a long prompt goes in appends of this many tokens: progress, and no call near its timeout
var root = Path.Combine(Path.GetTempPath(), $"tau-shard-bench-{Guid.NewGuid():N}");
var silos = new List<Process>();
try
{
    // The paper's shape (6 layers, n_embd 384, one head) with byte tokens and room for the context.
    var config = new ModelConfig(VocabSize: 256, NLayer: 6, NHead: 1, NKvHead: 1, NEmbd: 384, SequenceLen: context + warmup + tokens + 8,
        Softcap: 15, Attention: AttentionKind.Tau, Taumode: new TaumodeConfig(Mode: TaumodeKind.Median, Temperature: 0.05), Tokenizer: "bytes");
    TauModel.CreateRandom(config, seed: 7).Save(Path.Combine(root, "bench"));

    string clusterId = $"shards-{Guid.NewGuid():N}"[..16];
    int primaryPort = SiloProcesses.FreePort();
    var started = Enumerable.Range(0, 3).Select(i => SiloProcesses.Start($"silo{i}", clusterId, primaryPort, primary: i == 0,
        [$"--Tau:Models:bench={Path.Combine(root, "bench")}", $"--Tau:ContextBudgetBytes={(i == 0 ? budgetMb * (1L << 20) : 0)}"])).ToList();
    silos.AddRange(started.Select(s => s.Process));
    using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(30) };
    foreach (var s in started) await SiloProcesses.WaitHealthy(http, s.Http, CancellationToken.None);

    var prompt = Enumerable.Range(0, context).Select(i => 32 + (int)((uint)(i * 2654435761L >> 9) % 95)).ToArray();
    var spec = new SessionSpec("bench", null, new SamplingSettings(0, 0, 1, 1));

    async Task<JsonArray> BytesPerSilo()
    {
        var each = new JsonArray();
        for (int i = 0; i < started.Count; i++)
        {
            silos[i].Refresh();
            string metrics = await http.GetStringAsync(new Uri(started[i].Http, "/metrics"));
            each.Add(new JsonObject
            {
                ["silo"] = i,
                ["session_cache_bytes"] = SiloProcesses.Gauge(metrics, "tau_cache_bytes{otel_scope_name=\"TauCluster\",cache=\"tau\"}"),
                ["context_shard_bytes"] = SiloProcesses.Gauge(metrics, "tau_context_shard_bytes{otel_scope_name=\"TauCluster\"}"),
                ["process_working_set_bytes"] = silos[i].WorkingSet64,
            });
        }
        return each;
    }

    async Task<JsonObject> Run(string label, int silo, int length)
    {
        using var host = await Connect(clusterId, started[silo].GatewayPort);
        var sessions = new TauSessionClient(host.Services.GetRequiredService<IClusterClient>());
        string id = $"{label}-{Guid.NewGuid():N}";
        await sessions.Open(id, spec);
        var prefill = Stopwatch.StartNew();
        for (int offset = 0; offset < length; offset += PromptPiece)
        {
            await sessions.Append(id, PromptInput.FromIds(prompt[offset..Math.Min(length, offset + PromptPiece)]));
            if (length > PromptPiece) Console.Error.WriteLine($"[{label}] {Math.Min(length, offset + PromptPiece):N0} of {length:N0} tokens in, {prefill.Elapsed.TotalSeconds:F0} s");
        }
        double prefillSeconds = prefill.Elapsed.TotalSeconds;

        await foreach (var _ in sessions.Generate(id, warmup)) { }   // JIT and caches warm before the timed steps
        await Task.Delay(1000);   // the scrape endpoint caches its answer for a moment
        string before = await http.GetStringAsync(new Uri(started[silo].Http, "/metrics"));
        var gaps = new List<double>();
        var ids = new List<int>();
        var clock = Stopwatch.StartNew();
        double last = 0;
        await foreach (var token in sessions.Generate(id, tokens))
        {
            double now = clock.Elapsed.TotalMilliseconds;
            if (ids.Count > 0) gaps.Add(now - last);   // time between consecutive tokens as the client sees them
            last = now;
            ids.Add(token.Id);
        }
        await Task.Delay(1000);
        string after = await http.GetStringAsync(new Uri(started[silo].Http, "/metrics"));
        var info = await sessions.Info(id);
        var shards = await sessions.Session(id).GetShards();
        var bytesPerSilo = await BytesPerSilo();
        long Delta(string series) => SiloProcesses.Gauge(after, series) - SiloProcesses.Gauge(before, series);
        long queries = Delta("tau_context_shard_queries_total{otel_scope_name=\"TauCluster\"}");
        gaps.Sort();
        await sessions.Session(id).Delete();
        return new JsonObject
        {
            ["silo"] = silo,
            ["context"] = length,
            ["prefill_seconds"] = Math.Round(prefillSeconds, 1),
            ["prefill_tokens_per_second"] = Math.Round(length / prefillSeconds, 1),
            ["ms_per_token_median"] = Math.Round(gaps[gaps.Count / 2], 2),
            ["ms_per_token_mean"] = Math.Round(gaps.Average(), 2),
            ["session_cache_bytes"] = info.CacheBytes,
            ["shards"] = shards.Length,
            ["shard_silos"] = shards.Select(s => s.Silo).Distinct().Count(),
            ["shard_bytes"] = info.ShardBytes,
            ["shard_queries"] = queries,
            ["bytes_sent_per_token_per_layer"] = queries == 0 ? 0 : Delta("tau_context_shard_query_bytes_total{otel_scope_name=\"TauCluster\",direction=\"sent\"}") / (double)queries,
            ["bytes_received_per_token_per_layer"] = queries == 0 ? 0 : Delta("tau_context_shard_query_bytes_total{otel_scope_name=\"TauCluster\",direction=\"received\"}") / (double)queries,
            ["bytes_per_silo"] = bytesPerSilo,
            ["ids"] = new JsonArray(ids.Select(i => (JsonNode)i).ToArray()),
        };
    }

    var short_ = await Run("baseline", 1, Math.Min(baseline, context));
    var whole = await Run("whole", 1, compare);
    var sharded = await Run("sharded", 0, compare);
    bool same = whole["ids"]!.ToJsonString() == sharded["ids"]!.ToJsonString();
    var longest = compare < context ? await Run("longest", 0, context) : sharded;
    foreach (var run in new[] { short_, whole, sharded, longest }) run.Remove("ids");
    double Median(JsonObject run) => run["ms_per_token_median"]!.GetValue<double>();
    var summary = new JsonObject
    {
        ["context"] = context,
        ["compare_context"] = compare,
        ["decode_tokens"] = tokens,
        ["warmup_tokens"] = warmup,
        ["model"] = "6 layers, n_embd 384, 1 head (D = 384), bytes vocabulary",
        ["budget_bytes"] = budgetMb * (1L << 20),
        ["baseline"] = short_,
        ["whole"] = whole,
        ["sharded"] = sharded,
        ["sharded_over_whole"] = Math.Round(Median(sharded) / Median(whole), 2),
        ["same_tokens"] = same,
        ["longest"] = compare < context ? longest : null,
        ["longest_over_baseline"] = Math.Round(Median(longest) / Median(short_), 2),
    };
    Console.WriteLine(summary.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    return same ? 0 : 1;
}
finally
{
    SiloProcesses.Stop(silos);
    try { Directory.Delete(root, recursive: true); } catch (IOException) { }
}

static async Task<IHost> Connect(string clusterId, int gatewayPort)
{
    var builder = Host.CreateApplicationBuilder();
    builder.Logging.ClearProviders();
    builder.UseOrleansClient(client =>
    {
        client.UseStaticClustering(new IPEndPoint(IPAddress.Loopback, gatewayPort));
        client.Configure<ClusterOptions>(o => (o.ClusterId, o.ServiceId) = (clusterId, clusterId));
        client.Services.AddTauErrors();
    });
    var host = builder.Build();
    await host.StartAsync();
    return host;
}

int Option(string name, int fallback)
{
    int at = Array.IndexOf(args, name);
    return at >= 0 && at + 1 < args.Length && int.TryParse(args[at + 1], out int value) && value > 0 ? value : fallback;
}
