using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau bench sessions</c>: aggregate tokens/s of N concurrent sessions through an embedded one-silo cluster (session
/// grains, the compute worker, Orleans streams), beside one session on the bare engine: the cluster path's overhead.
/// </summary>
internal static class BenchSessionsCommand
{
    private static readonly Option<string> Model = ModelOption(ModelStore.PaperName);
    private static readonly Option<string> Sessions = Text("--sessions", "1,16", "the numbers of concurrent sessions, comma-separated", "1,4");
    private static readonly Option<int> Tokens = Number("--tokens", "N", "tokens each session generates", 64);
    private static readonly Option<int> Repeats = Number("--repeats", "N", "runs of each figure (the median is kept)", 3);
    private static readonly Option<string> Device = DeviceOption();
    private static readonly Option<bool> Json = JsonOption();

    public static Command Command()
    {
        var command = new Command("sessions", "tokens/s of N concurrent sessions through an embedded one-silo cluster, beside one session on the bare engine")
        {
            Model, Sessions, Tokens, Repeats, Device, Json,
        };
        command.SetAction(Run);
        return command;
    }

    private static async Task<int> Run(ParseResult r, CancellationToken cancellation)
    {
        var counts = Counts(r.GetValue(Sessions)!, "--sessions");
        int tokens = AtLeastOne(r.GetValue(Tokens), "--tokens");
        int repeats = AtLeastOne(r.GetValue(Repeats), "--repeats");
        bool json = r.GetValue(Json);
        var options = EmbeddedOptions();
        options.Device = r.Device(Device).Name;
        var model = LocalModel(options, r.GetValue(Model)!, out string name);
        int[] prompt = [1, 2, 3, 4, 5, 6, 7, 8];

        // The bare engine: one session, the same sampling, the same number of tokens. It is timed after both paths have
        // run once untimed, since a path timed first would run partly on code the JIT has not yet optimised (the first
        // figure of a process came out up to a quarter slow). Every figure is the median of --repeats runs: one run of a
        // few hundred milliseconds is at the mercy of a shared machine.
        using var bare = new ComputeWorkers(device: ComputeDevice.Parse(options.Device));
        double EngineRun()
        {
            using var engine = bare.NewSession(model);
            var sampler = new Sampler(model.Config.VocabSize, new SamplingOptions(0.8, 40, 0.95, 1));
            var logits = engine.Append(prompt);
            var engineClock = Stopwatch.StartNew();
            for (int i = 0; i < tokens; i++)
            {
                cancellation.ThrowIfCancellationRequested();
                logits = engine.Append(sampler.Sample(logits));
            }
            return tokens / engineClock.Elapsed.TotalSeconds;
        }
        Progress($"the bare engine, one session of {tokens} tokens on {name} …");
        EngineRun();

        await using var cluster = await ClusterConnection.StartEmbedded(options, cancellation);
        var spec = new SessionSpec(name, null, new SamplingSettings(0.8, 40, 0.95, 1));
        string warm = $"bench-warm-{Guid.NewGuid():N}";
        await foreach (var _ in cluster.Sessions.Complete(warm, new CompletionRequest(spec, PromptInput.FromIds(prompt), tokens), cancellation)) { }
        await cluster.Sessions.Session(warm).Delete();
        double engineRate = Median(Enumerable.Range(0, repeats).Select(_ => EngineRun()).ToArray());

        var results = new JsonArray();
        var clock = new Stopwatch();
        var compute = cluster.Compute!;
        foreach (int count in counts)
        {
            Progress($"{count} concurrent sessions of {tokens} tokens through the cluster, {repeats} runs …");
            var rates = new double[repeats];
            double stepsPerPass = 0;
            for (int run = 0; run < repeats; run++)
            {
                var ids = Enumerable.Range(0, count).Select(i => $"bench-{Guid.NewGuid():N}").ToArray();
                foreach (var id in ids)
                {
                    await cluster.Sessions.Open(id, spec, cancellation);
                    await cluster.Sessions.Append(id, PromptInput.FromIds(prompt), cancellation);
                }
                long passes = compute.Batches, steps = compute.Steps;   // from here: the prompts' passes are not decode passes
                clock.Restart();
                await Task.WhenAll(ids.Select(async id => { await foreach (var _ in cluster.Sessions.Generate(id, tokens, cancellation: cancellation)) { } }));
                rates[run] = count * tokens / clock.Elapsed.TotalSeconds;
                stepsPerPass += (double)(compute.Steps - steps) / Math.Max(1, compute.Batches - passes) / repeats;
                foreach (var id in ids) await cluster.Sessions.Session(id).Delete();
            }
            double rate = Median(rates);
            results.Add(new JsonObject { ["sessions"] = count, ["tokens_per_second"] = Math.Round(rate, 1), ["decode_steps_per_pass"] = Math.Round(stepsPerPass, 2) });
            if (!json) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{count,3} sessions: {rate,8:F1} tokens/s, {stepsPerPass,5:F1} decode steps per forward pass"));
        }
        if (json)
            Console.WriteLine(new JsonObject { ["results"] = results, ["engine_tokens_per_second"] = Math.Round(engineRate, 1) }.ToJsonString());
        else
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bare engine, 1 session: {engineRate:F1} tokens/s"));
        return 0;
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }
}
