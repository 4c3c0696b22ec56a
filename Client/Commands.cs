using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using TauCluster.Engine;

namespace TauCluster.Client;

public static class Commands
{
    public static int Help()
    {
        Console.WriteLine("""
            tau — serve Tauformer models

              tau generate [--model DIR|NAME] (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]
                           [--temperature T] [--top-k K] [--top-p P] [--seed S] [--session ID]
                           [--domain DIR|NAME] [--json]
              tau model init --config FILE --out DIR [--seed S]
              tau manifold inspect DIR

            Without --model, generate runs the built-in default model (random weights: its text is noise).
            """);
        return 0;
    }

    public static int Generate(IReadOnlyList<string> args)
    {
        var a = new ParsedArguments(args,
            new HashSet<string> { "--model", "--prompt", "--prompt-ids", "--max-tokens", "--temperature", "--top-k", "--top-p", "--seed", "--session", "--domain", "--cluster" },
            new HashSet<string> { "--json" });
        if (a.Has("--cluster"))
            throw new UsageException("--cluster needs the Orleans cluster, which this build does not include yet; run without it");
        if (a.Has("--prompt") == a.Has("--prompt-ids")) throw new UsageException("give exactly one of --prompt and --prompt-ids");
        int maxTokens = a.Int("--max-tokens") ?? 32;
        if (maxTokens < 1) throw new UsageException($"--max-tokens {maxTokens} must be at least 1");
        var sampling = new SamplingOptions(
            Temperature: a.Double("--temperature") ?? 0.8,
            TopK: a.Int("--top-k") ?? 0,
            TopP: a.Double("--top-p") ?? 1.0,
            Seed: a.ULong("--seed") ?? 0).Validate();
        bool json = a.Has("--json");
        Action<string> progress = message => Console.Error.WriteLine(message);

        var model = ModelResolver.Model(a.String("--model"), progress);
        var domain = a.String("--domain") is { } d ? model.DomainFor(ModelResolver.Domain(d)) : null;
        var tokenizer = model.Tokenizer;
        int[] prompt = a.String("--prompt") is { } text
            ? (tokenizer ?? throw new UsageException("this model has no tokenizer: give --prompt-ids")).Encode(text).ToArray()
            : ParseIds(a.Required("--prompt-ids"));
        if (prompt.Length == 0) throw new UsageException("the prompt is empty");

        var session = new InferenceSession(model, domain);
        session.Reserve(prompt.Length + maxTokens);
        var sampler = new Sampler(model.Config.VocabSize, sampling);
        var generated = new List<int>(maxTokens);
        var clock = Stopwatch.StartNew();
        var streamer = json || tokenizer is null ? null : new IncrementalDecoder(tokenizer);

        var logits = session.Append(prompt);
        double ttftMs = 0;
        for (int i = 0; i < maxTokens; i++)
        {
            int next = sampler.Sample(logits);
            generated.Add(next);
            if (i == 0) ttftMs = clock.Elapsed.TotalMilliseconds;
            if (streamer is not null) { Console.Write(streamer.Add(next)); Console.Out.Flush(); }
            if (tokenizer is null && !json) Console.Write(i == 0 ? $"{next}" : $",{next}");
            if (i + 1 < maxTokens && session.Length < model.Config.SequenceLen) logits = session.Append(next);
            else if (session.Length >= model.Config.SequenceLen) break;
        }
        double seconds = clock.Elapsed.TotalSeconds;
        double decodeSeconds = seconds - ttftMs / 1000;
        double tokensPerSecond = generated.Count > 1 && decodeSeconds > 0 ? (generated.Count - 1) / decodeSeconds : generated.Count / seconds;

        string sessionId = a.String("--session") ?? $"s-{Guid.NewGuid():N}"[..14];
        if (json)
        {
            var result = new JsonObject
            {
                ["session"] = sessionId,
                ["ids"] = new JsonArray(generated.Select(id => (JsonNode)id).ToArray()),
                ["text"] = tokenizer?.Decode(generated),
                ["stats"] = new JsonObject
                {
                    ["prompt_tokens"] = prompt.Length,
                    ["generated_tokens"] = generated.Count,
                    ["cache_bytes"] = session.Cache.Bytes,
                    ["baseline_cache_bytes"] = session.Cache.KeyValueBaselineBytes,
                    ["ttft_ms"] = Math.Round(ttftMs, 3),
                    ["tokens_per_second"] = Math.Round(tokensPerSecond, 3),
                },
            };
            Console.WriteLine(result.ToJsonString());
        }
        else
        {
            Console.WriteLine();
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"[{prompt.Length} prompt + {generated.Count} generated tokens, ttft {ttftMs:F1} ms, {tokensPerSecond:F1} tok/s, cache {session.Cache.Bytes:N0} B vs {session.Cache.KeyValueBaselineBytes:N0} B for K/V]"));
        }
        return 0;
    }

    private static int[] ParseIds(string text)
    {
        try
        {
            return text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
        }
        catch (FormatException)
        {
            throw new UsageException($"--prompt-ids '{text}' must be comma-separated integers");
        }
        catch (OverflowException)
        {
            throw new UsageException($"--prompt-ids '{text}' has an id out of range");
        }
    }

    public static int ModelInit(IReadOnlyList<string> args)
    {
        var a = new ParsedArguments(args, new HashSet<string> { "--config", "--out", "--seed" }, new HashSet<string>());
        var config = ModelConfig.Load(a.Required("--config"));
        string output = a.Required("--out");
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
            throw new UsageException($"--out {output} exists and is not empty");
        Laplacian? manifold = null;
        if (config.ManifoldDirectory is { } m)
            manifold = Manifold.Load(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(a.Required("--config")))!, m));
        TauModel.CreateRandom(config, a.ULong("--seed") ?? 0, manifold).Save(output);
        Console.WriteLine($"wrote {output}: {config.NLayer} layers, n_embd {config.NEmbd}, {config.NHead} heads / {config.NKvHead} kv heads, vocab {config.VocabSize}, {config.Attention.ToString().ToLowerInvariant()} attention");
        return 0;
    }

    public static int ManifoldInspect(string directory)
    {
        var laplacian = Manifold.Load(directory);
        var energies = Enumerable.Range(0, 256).Select(i =>
        {
            var rng = new Xoshiro256((ulong)i + 1);
            var x = Enumerable.Range(0, laplacian.Dimension).Select(_ => (float)rng.NextGaussian()).ToArray();
            Kernels.RmsNorm(x, x);
            return Taumode.RayleighEnergy(x, laplacian, 1e-6);
        }).ToArray();
        var (diagMin, diagMax) = laplacian.DiagonalRange();
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            name = laplacian.Name,
            dimension = laplacian.Dimension,
            non_zeros = laplacian.NonZeros,
            tau_mode = laplacian.DefaultTauMode?.ToString().ToLowerInvariant(),
            diagonal = new[] { diagMin, diagMax },
            energy_of_random_unit_vectors = new[] { energies.Min(), energies.Max() },
        }));
        return 0;
    }
}
