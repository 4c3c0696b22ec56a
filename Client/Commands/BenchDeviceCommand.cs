using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// <c>tau bench device</c>: aggregate decode tokens/s of N concurrent sessions at each context, batched by one compute
/// worker on a device (a GPU, or the CPU for the same figures side by side), with device memory per session and model.
/// One session's cache is filled synthetically to the context, and the others are copies of it (device to device), so
/// that 256 sessions of 64K tokens take seconds to set up; decode cost depends only on how much is cached.
/// </summary>
internal static class BenchDeviceCommand
{
    private static readonly Option<string> Device = DeviceOption();
    private static readonly Option<string> Model = ModelOption(ModelStore.PaperName);
    private static readonly Option<string> Shape = Text("--shape", "LAYERS,EMBD,HEADS,KV_HEADS", "time random weights of this shape instead of a model");
    private static readonly Option<string> Attention = Text("--attention", "tau|causal", "the attention to time", "tau");
    private static readonly Option<string> Contexts = Text("--contexts", "1024,16384,65536", "the contexts to time at, comma-separated", "1024,16384,65536");
    private static readonly Option<string> Sessions = Text("--sessions", "1,16,64,256", "the numbers of concurrent sessions, comma-separated", "1,16,64,256");
    private static readonly Option<int> Steps = Number("--steps", "N", "decode steps timed for each row", 32);
    private static readonly Option<double> CacheGib = Number("--cache-gib", "G", "each model's cache pool on the device in GiB (0 = a share of the device's memory)", 0.0);
    private static readonly Option<bool> Json = JsonOption();

    public static Command Command()
    {
        var command = new Command("device", "tokens/s of N concurrent sessions batched on one device, with device memory per session and model")
        {
            Device, Model, Shape, Attention, Contexts, Sessions, Steps, CacheGib, Json,
        };
        command.SetAction(Run);
        return command;
    }

    private static async Task<int> Run(ParseResult r, CancellationToken cancellation)
    {
        var contexts = Counts(r.GetValue(Contexts)!, "--contexts");
        var counts = Counts(r.GetValue(Sessions)!, "--sessions");
        int steps = AtLeastOne(r.GetValue(Steps), "--steps");
        var attention = r.GetValue(Attention) switch
        {
            "tau" => AttentionKind.Tau,
            "causal" => AttentionKind.Causal,
            var other => throw new UsageException($"--attention '{other}' must be tau or causal"),
        };
        long cacheBytes = (long)(r.GetValue(CacheGib) * (1L << 30));
        if (cacheBytes < 0) throw new UsageException("--cache-gib must not be negative");
        var model = ModelToTime(r, attention, contexts.Max() + steps + 16, out string modelName);

        using var workers = new ComputeWorkers(maxBatch: counts.Max(), device: r.Device(Device), deviceCacheBytes: cacheBytes);
        var worker = workers.For(model);
        var c = model.Config;
        bool json = r.GetValue(Json);
        var results = new JsonArray();
        foreach (int context in contexts)
        {
            cancellation.ThrowIfCancellationRequested();
            Progress($"filling a cache of {context} positions on {workers.Device} …");
            using var source = workers.NewSession(model);
            source.FillSynthetic(context - 1, seed: 1);
            foreach (int count in counts)
            {
                cancellation.ThrowIfCancellationRequested();
                Progress($"  {count} sessions at {context} …");
                var row = new JsonObject { ["context"] = context, ["sessions"] = count };
                var sessions = new List<InferenceSession>();
                try
                {
                    for (int i = 0; i < count; i++) sessions.Add(source.CopyPrefix(source.Length));
                    var (rate, msPerStep) = await Decode(worker, sessions, steps);
                    row["tokens_per_second"] = Math.Round(rate, 1);
                    row["ms_per_step"] = Math.Round(msPerStep, 3);
                    row["cache_bytes_per_session"] = sessions[0].Cache.Bytes;
                    row["device_bytes_per_session"] = (sessions[0].Cache as DeviceCache)?.DeviceBytes ?? 0;
                    if (!json)
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"context {context,7}, {count,3} sessions: {rate,10:F1} tokens/s, {msPerStep,8:F3} ms per step, {sessions[0].Cache.Bytes / (double)(1 << 20),8:F2} MiB cache each"));
                }
                catch (DeviceMemoryExhaustedException e)
                {
                    row["fits"] = false;
                    row["error"] = e.Message;
                    if (!json) Console.WriteLine($"context {context,7}, {count,3} sessions: does not fit ({e.Message})");
                }
                finally
                {
                    foreach (var session in sessions) session.Dispose();
                }
                results.Add(row);
            }
        }

        var summary = new JsonObject
        {
            ["device"] = workers.Device.Name,
            ["device_name"] = workers.Accelerator?.Name ?? Environment.ProcessorCount + " CPU threads",
            ["device_memory_bytes"] = workers.Device.Kind == DeviceKind.Cuda ? workers.Accelerator!.MemoryBytes : null,
            ["model"] = modelName,
            ["shape"] = new JsonObject
            {
                ["layers"] = c.NLayer, ["n_embd"] = c.NEmbd, ["heads"] = c.NHead, ["kv_heads"] = c.NKvHead, ["vocab"] = c.VocabSize,
                ["attention"] = c.Attention == AttentionKind.Tau ? "tau" : "causal",
            },
            ["weight_bytes_on_device"] = workers.DeviceModels.FirstOrDefault()?.WeightBytes,
            ["cache_pool_bytes"] = workers.DeviceModels.FirstOrDefault()?.CachePoolBytes,
            ["steps"] = steps,
            ["synthetic_cache_fill"] = true,
            ["results"] = results,
        };
        if (json) Console.WriteLine(summary.ToJsonString());
        return 0;
    }

    /// <summary>
    /// Every session decodes <paramref name="steps"/> tokens in one run each, all at once, timed from the runs' start to
    /// their last token; a run of two tokens each before it warms the worker and the kernels up.
    /// </summary>
    private static async Task<(double TokensPerSecond, double MsPerStep)> Decode(ComputeWorker worker, List<InferenceSession> sessions, int steps)
    {
        int vocab = sessions[0].Model.Config.VocabSize;
        await RunAll(2);
        var clock = Stopwatch.StartNew();
        await RunAll(steps);
        double seconds = clock.Elapsed.TotalSeconds;
        return (sessions.Count * steps / seconds, seconds * 1000 / steps);

        Task RunAll(int count) => Task.WhenAll(sessions.Select(async session =>
        {
            var run = worker.Generate(session, new[] { 1 }, new Sampler(vocab, SamplingOptions.Greedy), count);
            for (int i = 0; i < count; i++) await run.Next();
            await run.Stop();
        }));
    }

    /// <summary>The model to time: one by name or directory (paper by default), or random weights of <c>--shape</c>.</summary>
    private static TauModel ModelToTime(ParseResult r, AttentionKind attention, int sequenceLen, out string name)
    {
        if (r.GetValue(Shape) is { } shape)
        {
            if (r.Given(Model)) throw new UsageException("give --model or --shape, not both");
            var s = List(shape, int.Parse, "--shape", "LAYERS,EMBD,HEADS,KV_HEADS");
            if (s.Length != 4) throw new UsageException("--shape is LAYERS,EMBD,HEADS,KV_HEADS");
            var config = new ModelConfig(VocabSize: 256, NLayer: s[0], NHead: s[2], NKvHead: s[3], NEmbd: s[1], SequenceLen: sequenceLen,
                RopeBase: 10000, Softcap: 15, Attention: attention, Taumode: new TaumodeConfig(Mode: TaumodeKind.Median), Tokenizer: "bytes");
            name = $"random {s[0]}x{s[1]}, {s[2]} heads, {s[3]} kv heads";
            return TauModel.CreateRandom(config.Validate(), 1);
        }
        return LocalModel(EmbeddedOptions(), r.GetValue(Model)!, out name).Variant(attention, sequenceLen);
    }
}
