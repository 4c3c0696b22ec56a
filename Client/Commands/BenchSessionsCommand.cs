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
    public const string Usage = """
        tau bench sessions [--model DIR|NAME] [--sessions 1,16] [--tokens N] [--repeats 3] [--device cpu|cuda[:N]|ilgpu-cpu] [--json]
        """;

    private static readonly string[] Options = ["--model", "--sessions", "--tokens", "--repeats", "--device"];

    private static readonly string[] Flags = ["--json"];

    public static async Task<int> Run(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var a = new ParsedArguments(args, Options, Flags);
        var counts = List(a.String("--sessions") ?? "1,4", int.Parse, "--sessions", NumberList);
        foreach (int count in counts) AtLeastOne(count, "--sessions");
        int tokens = AtLeastOne(a.Int("--tokens") ?? 64, "--tokens");
        int repeats = AtLeastOne(a.Int("--repeats") ?? 3, "--repeats");
        var options = EmbeddedOptions();
        options.Device = Device(a).Name;
        var model = BenchModel(options, a.String("--model"), out string name);
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
            for (int i = 0; i < tokens; i++) logits = engine.Append(sampler.Sample(logits));
            return tokens / engineClock.Elapsed.TotalSeconds;
        }
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
            if (!a.Has("--json")) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{count,3} sessions: {rate,8:F1} tokens/s, {stepsPerPass,5:F1} decode steps per forward pass"));
        }
        if (a.Has("--json"))
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
