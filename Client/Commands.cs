using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using TauCluster.Engine;
using TauCluster.Grains;
using TauCluster.Training;

namespace TauCluster.Client;

public static class Commands
{
    private static readonly string[] ClusterOptions = ["--cluster", "--cluster-id", "--service-id"];
    private static readonly string[] SamplingOptionNames = ["--temperature", "--top-k", "--top-p", "--seed"];
    private static readonly JsonSerializerOptions SnakeCase = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static int Help()
    {
        Console.WriteLine("""
            tau — serve Tauformer models on an Orleans cluster

              tau generate [--model DIR|NAME] (--prompt TEXT | --prompt-ids 1,2,3) [--max-tokens N]
                           [--temperature T] [--top-k K] [--top-p P] [--seed S] [--session ID]
                           [--domain DIR|NAME] [--cluster HOST:PORT[,…]|redis://HOST:PORT] [--json]
              tau chat [--model DIR|NAME] [--session ID] [--domain DIR|NAME] [--max-tokens N] [sampling] [--cluster …]
              tau sessions info|delete ID [--cluster …]
              tau sessions fork ID NEW_ID [--cluster …]
              tau model init --config FILE --out DIR [--seed S]
              tau bench decode [--model DIR|NAME] [--contexts 1024,4096] [--attention tau-index,tau-dense,causal] [--steps N] [--json]
              tau bench sessions [--model DIR|NAME] [--sessions 1,4] [--tokens N] [--json]
              tau manifold build --from FILE.npy|FILE.safetensors|MODEL_DIR [--tensor NAME] --out DIR [--centroids N] [--k K]
                                 [--sigma S] [--p P] [--seed S] [--iterations N] [--tau-mode median|mean|fixed|percentile] [--name NAME]
              tau manifold inspect DIR
              tau train --corpus FILE --out DIR [--attention tau|causal] [--layers N] [--embd C] [--heads H]
                        [--kv-heads K] [--seq-len N] [--batch N] [--steps N] [--lr X] [--warmup N] [--seed S]
                        [--manifold DIR | --laplacian chain] [--eval-every N] [--val-fraction F] [more: tau train --help]
              tau train --resume --out DIR [--corpus FILE] [--threads N]

            Without --cluster, tau starts an embedded one-silo cluster in this process; its sessions are kept
            under $TAU_HOME (default ~/.cache/taucluster). Without --model it runs the built-in default model,
            whose weights are random: its text is noise.
            """);
        return 0;
    }

    public static async Task<int> Generate(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var a = new ParsedArguments(args,
            ["--model", "--prompt", "--prompt-ids", "--max-tokens", "--session", "--domain", .. SamplingOptionNames, .. ClusterOptions], ["--json"]);
        if (a.Has("--prompt") == a.Has("--prompt-ids")) throw new UsageException("give exactly one of --prompt and --prompt-ids");
        int maxTokens = MaxTokens(a, 32);
        var sampling = Sampling(a);
        var prompt = a.String("--prompt") is { } promptText ? PromptInput.FromText(promptText) : PromptInput.FromIds(ParseIds(a.Required("--prompt-ids")));
        if (prompt.Text is "") throw new UsageException("the prompt is empty");
        bool json = a.Has("--json");
        string sessionId = SessionId(a);

        await using var cluster = await Connect(a, cancellation);
        var spec = new SessionSpec(cluster.Model, cluster.Domain, sampling);
        await cluster.Connection.Sessions.Open(sessionId, spec, cancellation);
        var clock = Stopwatch.StartNew();
        var before = await cluster.Connection.Sessions.Info(sessionId, cancellation);
        var appended = await cluster.Connection.Sessions.Append(sessionId, prompt with { ExpectedLength = before.Length }, cancellation);

        var ids = new List<int>();
        var text = new System.Text.StringBuilder();
        bool hasText = false;
        double ttftMs = 0;
        await foreach (var token in cluster.Connection.Sessions.Generate(sessionId, maxTokens, cancellation: cancellation, from: appended.Length))
        {
            if (ids.Count == 0) ttftMs = clock.Elapsed.TotalMilliseconds;
            ids.Add(token.Id);
            hasText |= token.Text is not null;
            text.Append(token.Text);
            if (json) continue;
            Console.Write(token.Text ?? (ids.Count == 1 ? $"{token.Id}" : $",{token.Id}"));
            Console.Out.Flush();
        }
        double seconds = clock.Elapsed.TotalSeconds, decodeSeconds = seconds - ttftMs / 1000;
        double tokensPerSecond = ids.Count > 1 && decodeSeconds > 0 ? (ids.Count - 1) / decodeSeconds : ids.Count / Math.Max(seconds, 1e-9);
        var info = await cluster.Connection.Sessions.Info(sessionId, cancellation);

        if (json)
        {
            Console.WriteLine(new JsonObject
            {
                ["session"] = sessionId,
                ["ids"] = new JsonArray(ids.Select(id => (JsonNode)id).ToArray()),
                ["text"] = hasText ? text.ToString() : null,
                ["stats"] = new JsonObject
                {
                    ["prompt_tokens"] = appended.Length - before.Length,
                    ["generated_tokens"] = ids.Count,
                    ["cache_bytes"] = info.CacheBytes,
                    ["baseline_cache_bytes"] = info.BaselineCacheBytes,
                    ["ttft_ms"] = Math.Round(ttftMs, 3),
                    ["tokens_per_second"] = Math.Round(tokensPerSecond, 3),
                },
            }.ToJsonString());
        }
        else
        {
            Console.WriteLine();
            Progress(string.Create(CultureInfo.InvariantCulture,
                $"[session {sessionId}: {appended.Length - before.Length} prompt + {ids.Count} generated tokens, ttft {ttftMs:F1} ms, {tokensPerSecond:F1} tok/s, cache {info.CacheBytes:N0} B vs {info.BaselineCacheBytes:N0} B for K/V]"),
                always: true);
        }
        return 0;
    }

    /// <summary>
    /// An interactive conversation that keeps its session across turns. Each line is one user turn, sent through
    /// the plain chat template "User: …\nAssistant:"; the reply stops at the next "\nUser:".
    /// </summary>
    public static async Task<int> Chat(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var a = new ParsedArguments(args, ["--model", "--max-tokens", "--session", "--domain", .. SamplingOptionNames, .. ClusterOptions], []);
        int maxTokens = MaxTokens(a, 64);
        var sampling = Sampling(a);
        string sessionId = SessionId(a);
        await using var cluster = await Connect(a, cancellation);
        var sessions = cluster.Connection.Sessions;
        var opened = await sessions.Open(sessionId, new SessionSpec(cluster.Model, cluster.Domain, sampling), cancellation);
        Progress($"session {sessionId} — type a message; /reset, /fork [ID], /info, /quit", always: true);
        // Where the session's text stands in the chat template: empty, just after a reply that stopped at "\nUser:", or elsewhere.
        string held = opened.Length == 0 ? "" : await sessions.Session(sessionId).GetText() ?? "";
        string turnPrefix = opened.Length == 0 ? "User: " : held.EndsWith(ChatTemplate.TurnStop, StringComparison.Ordinal) ? " " : "\nUser: ";

        while (!cancellation.IsCancellationRequested)
        {
            try
            {
                if (!await ChatTurn()) break;
            }
            catch (Exception e) when (e is TauException or UsageException)
            {
                Console.WriteLine($"(error: {e.Message})");   // a bad line costs that line, not the conversation
            }
        }
        return 0;

        async Task<bool> ChatTurn()
        {
            Console.Error.Write("you> ");
            string? line = Console.ReadLine();
            if (line is null || line.Trim() is "/quit" or "/exit") return false;
            line = line.Trim();
            if (line.Length == 0) return true;
            switch (line.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries))
            {
                case ["/reset"]:
                    await sessions.Session(sessionId).Reset();
                    turnPrefix = "User: ";
                    Console.WriteLine("(session reset)");
                    return true;
                case ["/fork", .. var rest]:
                    string child = rest.Length > 0 ? Names.Require("session", rest[0].Trim()) : NewSessionId();
                    var forked = await sessions.Session(sessionId).Fork(child);
                    Console.WriteLine($"(forked into {forked.Session} at {forked.Length} tokens; continuing in {sessionId})");
                    return true;
                case ["/info"]:
                    Console.WriteLine(JsonSerializer.Serialize(await sessions.Info(sessionId, cancellation), SnakeCase));
                    return true;
                case [var command, ..] when command.StartsWith('/'):
                    Console.WriteLine($"(unknown command {command}; /reset, /fork [ID], /info, /quit)");
                    return true;
            }
            await sessions.Append(sessionId, PromptInput.FromText($"{turnPrefix}{line}\nAssistant:"), cancellation);
            Console.Write("tau>");
            await foreach (var update in sessions.Complete(sessionId, maxTokens, [ChatTemplate.TurnStop], cancellation))
            {
                Console.Write(update.Text);
                Console.Out.Flush();
                if (update.FinishReason is not null) turnPrefix = update.FinishReason == "stop" ? " " : "\nUser: ";
            }
            Console.WriteLine();
            return true;
        }
    }

    public static async Task<int> Sessions(string verb, IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var positional = args.TakeWhile(x => !x.StartsWith("--", StringComparison.Ordinal)).ToArray();
        var a = new ParsedArguments(args.Skip(positional.Length).ToList(), [.. ClusterOptions], []);
        var (id, child) = (verb, positional) switch
        {
            ("info" or "delete", [var s]) => (s, null),
            ("fork", [var s, var c]) => (s, c),
            ("info" or "delete" or "fork", _) => throw new UsageException($"usage: tau sessions {verb} ID{(verb == "fork" ? " NEW_ID" : "")} [--cluster …]"),
            _ => throw new UsageException($"unknown sessions command '{verb}' (info, fork, delete)"),
        };
        Names.Require("session", id);
        await using var cluster = await Connect(a, cancellation, resolveModel: false);
        var session = cluster.Connection.Sessions.Session(id);
        var info = await cluster.Connection.Sessions.Info(id, cancellation);
        if (verb != "info" && !info.Exists) throw new UnknownNameException("session", id);
        switch (verb)
        {
            case "info":
                Console.WriteLine(JsonSerializer.Serialize(info, SnakeCase));
                break;
            case "fork":
                Console.WriteLine(JsonSerializer.Serialize(await session.Fork(Names.Require("session", child!)), SnakeCase));
                break;
            default:
                await session.Delete();
                Console.WriteLine($"deleted {id}");
                break;
        }
        return 0;
    }

    public static int ModelInit(IReadOnlyList<string> args)
    {
        var a = new ParsedArguments(args, ["--config", "--out", "--seed"], []);
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

    /// <summary>
    /// Clusters items (a .npy or safetensors [N, D] matrix, or a model's layer-0 q/k head vectors) and writes the feature
    /// graph's Laplacian as a manifold directory; prints one line saying what it built.
    /// </summary>
    public static async Task<int> ManifoldBuild(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        var a = new ParsedArguments(args,
            ["--from", "--tensor", "--out", "--centroids", "--k", "--sigma", "--p", "--seed", "--iterations", "--tau-mode", "--name"], []);
        string from = a.Required("--from"), output = a.Required("--out");
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
            throw new UsageException($"--out {output} exists and is not empty");
        TauModeKind tauMode = a.String("--tau-mode") is { } modeText ? ParseTauMode(modeText) : TauModeKind.Median;
        var options = new ManifoldBuildOptions
        {
            Centroids = a.Int("--centroids"),
            Neighbours = a.Int("--k"),
            Sigma = a.Double("--sigma"),
            P = a.Double("--p") ?? ManifoldBuilder.DefaultP,
            Seed = a.ULong("--seed") ?? ManifoldBuilder.DefaultSeed,
            MaxIterations = a.Int("--iterations") ?? new ManifoldBuildOptions().MaxIterations,
            TauMode = tauMode,
            Name = a.String("--name") ?? Path.GetFileName(Path.GetFullPath(output).TrimEnd(Path.DirectorySeparatorChar)),
        };

        var clock = Stopwatch.StartNew();
        Progress($"reading {from} …");
        var items = ManifoldInputs.Load(from, a.String("--tensor"));
        var build = ManifoldBuilder.Build(items, options, message => Progress(message));
        await ManifoldBuilder.WriteAsync(output, build, cancellation);
        var s = build.Settings;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"wrote {output}: {s.Features}×{s.Features} Laplacian '{s.Name}', {build.Laplacian.NonZeros} non-zeros, {s.Edges} edges, {s.ConnectedComponents} connected component(s); " +
            $"{s.Items} items → {s.Centroids} centroids ({s.Iterations} k-means iterations{(s.Converged ? "" : ", not converged")}), " +
            $"k {s.Neighbours}, sigma {s.Sigma:G6}{(s.SigmaFromData ? " (median edge distance)" : "")}, p {s.P:G6}, seed {s.Seed}, tau mode {s.TauMode.ToString().ToLowerInvariant()}; {clock.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }

    private static readonly string[] TrainOptions =
    [
        "--corpus", "--out", "--attention", "--layers", "--embd", "--heads", "--kv-heads", "--seq-len", "--rope-base", "--softcap",
        "--manifold", "--laplacian", "--tau-mode", "--tau", "--tau-temperature", "--batch", "--steps", "--lr", "--min-lr-fraction",
        "--warmup", "--weight-decay", "--beta1", "--beta2", "--adam-eps", "--clip", "--seed", "--eval-every", "--eval-sequences",
        "--val-fraction", "--checkpoint-every", "--threads",
    ];

    public static int TrainHelp()
    {
        var d = new TrainingOptions { CorpusPath = "", OutputDirectory = "" };
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $$"""
            tau train — train a byte-level Tauformer (or dot-product) GPT on a text file, on this machine's cores

              tau train --corpus FILE --out DIR [options]     start a run (DIR must not hold one)
              tau train --resume --out DIR [--corpus FILE]     continue DIR's run from its last checkpoint

            Model (vocabulary 256, one token per byte, "tokenizer": "bytes"):
              --attention tau|causal      tau: λ-distance attention; causal: the q·k/√D baseline   [{{d.Attention.ToString().ToLowerInvariant()}}]
              --layers N  --embd C  --heads H  --kv-heads K (must divide H)          [{{d.Layers}}, {{d.Embedding}}, {{d.Heads}}, = H]
              --seq-len N  --rope-base B  --softcap S (0 = off)                       [{{d.SequenceLength}}, {{d.RopeBase}}, {{d.Softcap}}]
              --laplacian chain | --manifold DIR   tau's Laplacian (the manifold is copied into DIR)  [chain]
              --tau-mode fixed|median|mean|percentile  --tau T  --tau-temperature T   [manifold's mode or fixed, 1, 1]
            Optimisation (AdamW, warm-up then cosine decay, global gradient-norm clipping):
              --batch N  --steps N  --lr X  --min-lr-fraction F  --warmup N           [{{d.BatchSize}}, {{d.Steps}}, {{d.LearningRate}}, {{d.MinLearningRateFraction}}, min(100, N/10)]
              --weight-decay W  --beta1 B  --beta2 B  --adam-eps E  --clip X (0 = off) [{{d.WeightDecay}}, {{d.Beta1}}, {{d.Beta2}}, {{d.AdamEpsilon}}, {{d.GradientClip}}]
              --seed S                    weights and batches; the same options give the same model  [0]
            Evaluation and checkpoints:
              --val-fraction F            the last F of the file is held out for validation       [{{d.ValidationFraction}}]
              --eval-every N  --eval-sequences N   validation loss every N steps, over N windows   [{{d.EvalEvery}}, {{d.EvalSequences}}]
              --checkpoint-every N        [every evaluation]
              --threads N                 cores to use (results do not depend on it)               [all]

            At every checkpoint DIR is a model that `tau generate --model DIR` serves (config.json, model.safetensors),
            plus training.json and training_state-STEP.safetensors (optimizer state, to resume) and train_log.csv
            (step, lr, train_loss, val_loss, grad_norm, tokens_per_second, elapsed_seconds). Ctrl+C saves a checkpoint
            and stops; a run killed any other way resumes from its last checkpoint with the same result.
            """));
        return 0;
    }

    public static int Train(IReadOnlyList<string> args, CancellationToken cancellation)
    {
        if (args is ["--help"] or ["-h"]) return TrainHelp();
        var a = new ParsedArguments(args, TrainOptions, ["--resume"]);
        string output = a.Required("--out");
        int threads = a.Int("--threads") ?? 0;
        if (threads < 0) throw new UsageException($"--threads {threads} must be positive");
        Trainer trainer;
        try
        {
            if (a.Has("--resume"))
            {
                var extra = TrainOptions.Where(o => o is not ("--out" or "--corpus" or "--threads") && a.Has(o)).ToArray();
                if (extra.Length > 0)
                    throw new UsageException($"--resume continues the run in {output} with its own settings; {string.Join(", ", extra)} cannot be changed");
                trainer = Trainer.Resume(output, a.String("--corpus"), threads);
                Console.WriteLine($"resuming {output} at step {trainer.Step} of {trainer.Options.Steps}");
            }
            else
            {
                trainer = Trainer.Create(TrainingOptionsFrom(a, output), threads);
            }
        }
        catch (InvalidTrainingOptionsException e)
        {
            throw new UsageException(e.Message);
        }

        var o = trainer.Options;
        var c = trainer.ModelConfig;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"training {c.Attention.ToString().ToLowerInvariant()} model: {c.NLayer} layers, n_embd {c.NEmbd}, {c.NHead} heads / {c.NKvHead} kv heads, seq {o.SequenceLength}, batch {o.BatchSize}, {o.Steps} steps → {output}"));
        int every = Math.Max(1, Math.Min(10, o.EvalEvery));
        try
        {
            trainer.Run(cancellation, p =>
            {
                if (p.Step % every != 0 && p.ValidationLoss is null && p.Step != p.Steps) return;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {p.Step,6}/{p.Steps}  lr {p.LearningRate:E2}  loss {p.TrainLoss:F4}{(p.ValidationLoss is { } v ? $"  val {v:F4}" : "")}  |g| {p.GradientNorm:F3}  {p.TokensPerSecond,8:F0} tok/s  {TimeSpan.FromSeconds(Math.Round(p.ElapsedSeconds))}{(p.Checkpointed ? "  [checkpoint]" : "")}"));
            });
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
            Console.Error.WriteLine($"checkpoint saved at step {trainer.Step}; continue with: tau train --resume --out {output}");
            throw;
        }
        var last = trainer.ValidationLosses.Count > 0 ? trainer.ValidationLosses[^1] : default;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: {output} holds the model after {trainer.Step} steps (validation loss {last.Loss:F4} nats/byte = {last.Loss / Math.Log(2):F3} bits/byte); try: tau generate --model {output} --prompt TEXT"));
        return 0;
    }

    private static TrainingOptions TrainingOptionsFrom(ParsedArguments a, string output)
    {
        var d = new TrainingOptions { CorpusPath = a.Required("--corpus"), OutputDirectory = output };
        var attention = a.String("--attention") switch
        {
            null or "tau" => AttentionKind.Tau,
            "causal" => AttentionKind.Causal,
            var other => throw new UsageException($"--attention '{other}' must be tau or causal"),
        };
        if (a.String("--laplacian") is { } l && l != "chain") throw new UsageException($"--laplacian '{l}' must be chain (or give --manifold DIR)");
        if (a.Has("--laplacian") && a.Has("--manifold")) throw new UsageException("give --laplacian chain or --manifold DIR, not both");
        TaumodeConfig? taumode = null;
        if (a.Has("--tau-mode") || a.Has("--tau") || a.Has("--tau-temperature"))
        {
            var t = new TaumodeConfig();
            TauModeKind? mode = a.String("--tau-mode") is { } m ? ParseTauMode(m) : null;
            taumode = new TaumodeConfig(mode, a.Double("--tau") ?? t.Tau, t.Eps, a.Double("--tau-temperature") ?? t.Temperature, t.Percentile);
        }
        return d with
        {
            Attention = attention,
            Layers = a.Int("--layers") ?? d.Layers,
            Embedding = a.Int("--embd") ?? d.Embedding,
            Heads = a.Int("--heads") ?? d.Heads,
            KvHeads = a.Int("--kv-heads") ?? d.KvHeads,
            SequenceLength = a.Int("--seq-len") ?? d.SequenceLength,
            RopeBase = a.Double("--rope-base") ?? d.RopeBase,
            Softcap = a.Double("--softcap") ?? d.Softcap,
            ManifoldDirectory = a.String("--manifold"),
            Taumode = taumode,
            BatchSize = a.Int("--batch") ?? d.BatchSize,
            Steps = a.Int("--steps") ?? d.Steps,
            LearningRate = a.Double("--lr") ?? d.LearningRate,
            MinLearningRateFraction = a.Double("--min-lr-fraction") ?? d.MinLearningRateFraction,
            WarmupSteps = a.Int("--warmup"),
            WeightDecay = a.Double("--weight-decay") ?? d.WeightDecay,
            Beta1 = a.Double("--beta1") ?? d.Beta1,
            Beta2 = a.Double("--beta2") ?? d.Beta2,
            AdamEpsilon = a.Double("--adam-eps") ?? d.AdamEpsilon,
            GradientClip = a.Double("--clip") ?? d.GradientClip,
            Seed = a.ULong("--seed") ?? d.Seed,
            EvalEvery = a.Int("--eval-every") ?? d.EvalEvery,
            EvalSequences = a.Int("--eval-sequences") ?? d.EvalSequences,
            ValidationFraction = a.Double("--val-fraction") ?? d.ValidationFraction,
            CheckpointEvery = a.Int("--checkpoint-every") ?? d.CheckpointEvery,
        };
    }

    private static TauModeKind ParseTauMode(string text)
    {
        try
        {
            return ModelConfig.ParseTauMode(text, "--tau-mode");
        }
        catch (ModelFormatException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>Describes a manifold as one JSON object: size, τ mode, diagonal, random-vector energies and the Laplacian's spectrum.</summary>
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
        var spectrum = LaplacianSpectrum.Of(laplacian);
        var (edges, counts) = spectrum.Histogram(10);
        double[] quantiles = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1];
        Console.WriteLine(JsonSerializer.Serialize(new
        {
            name = laplacian.Name,
            dimension = laplacian.Dimension,
            non_zeros = laplacian.NonZeros,
            tau_mode = laplacian.DefaultTauMode?.ToString().ToLowerInvariant(),
            diagonal = new[] { diagMin, diagMax },
            energy_of_random_unit_vectors = new[] { energies.Min(), energies.Max() },
            spectrum = new
            {
                smallest = spectrum.Eigenvalues.Take(6).Select(Round).ToArray(),
                largest = Round(spectrum.Largest),
                zero_eigenvalues = spectrum.ZeroEigenvalues,
                zero_tolerance = spectrum.ZeroTolerance,
                connected_components = spectrum.ConnectedComponents,
                fiedler = Round(spectrum.Fiedler),
                quantiles = quantiles.ToDictionary(q => q.ToString(CultureInfo.InvariantCulture), q => Round(spectrum.Quantile(q))),
                histogram = new { edges = edges.Select(Round).ToArray(), counts },
            },
        }));
        return 0;

        // Eleven significant digits: far more than rounding leaves trustworthy, few enough to read; a ~1e-14 zero stays visible as such.
        static double Round(double v) => double.Parse(v.ToString("G11", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
    }

    private sealed record OpenCluster(ClusterConnection Connection, string Model, string? Domain) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Connection.DisposeAsync();
    }

    /// <summary>
    /// Embedded: a model or domain given as a directory is configured on the embedded silo under its folder name,
    /// so that sessions still name it (a silo never reads a path from a request). Remote: names only.
    /// </summary>
    private static async Task<OpenCluster> Connect(ParsedArguments a, CancellationToken cancellation, bool resolveModel = true)
    {
        string model = a.String("--model") ?? ModelStore.DefaultName;
        string? domain = a.String("--domain");
        if (a.String("--cluster") is { } address)
        {
            foreach (var (option, value) in new[] { ("--model", model), ("--domain", domain) })
                if (value is not null && !Names.IsValid(value))
                    throw new UsageException($"with --cluster, {option} must name a {option[2..]} configured on the silos, not a path ('{value}')");
            var remote = await ClusterConnection.Connect(address, a.String("--cluster-id") ?? "taucluster", a.String("--service-id") ?? "taucluster", cancellation);
            return new OpenCluster(remote, model, domain);
        }

        var options = EmbeddedOptions();
        if (resolveModel)
        {
            model = LocalName("model", model, options.Models);
            if (domain is not null) domain = LocalName("domain", domain, options.Manifolds);
            if (model == ModelStore.PaperName) PaperModel.EnsureCreated(options.DataDirectory, message => Progress(message));
        }
        Progress("starting an embedded silo …");
        return new OpenCluster(await ClusterConnection.StartEmbedded(options, cancellation), model, domain);
    }

    /// <summary>An embedded silo's settings: models and manifolds by name under $TAU_HOME.</summary>
    internal static TauClusterOptions EmbeddedOptions()
    {
        var options = new TauClusterOptions();
        options.ModelsRoot = Path.Combine(options.DataDirectory, "models");
        options.ManifoldsRoot = Path.Combine(options.DataDirectory, "manifolds");
        return options;
    }

    /// <summary>A name for what the user gave: a plain name as it is, a directory configured under a name of its own.</summary>
    internal static string LocalName(string kind, string nameOrDirectory, Dictionary<string, string> configured)
    {
        if (!Directory.Exists(nameOrDirectory))
            return Names.IsValid(nameOrDirectory) ? nameOrDirectory
                : throw new UnknownNameException(kind, nameOrDirectory, "not a directory, nor a plain name");
        // The folder name plus a hash of the full path: two folders of the same name are two models, and a session that
        // ran on one refuses the other ("already runs model …") instead of replaying its tokens on other weights.
        var full = Path.GetFullPath(nameOrDirectory).TrimEnd(Path.DirectorySeparatorChar);
        var folder = Path.GetFileName(full);
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(full)))[..8];
        var name = Names.IsValid($"{folder}-{hash}") ? $"{folder}-{hash}" : $"local-{kind}-{hash}";
        configured[name] = full;
        return name;
    }

    private static SamplingSettings Sampling(ParsedArguments a)
    {
        var sampling = new SamplingSettings(a.Double("--temperature") ?? 0.8, a.Int("--top-k") ?? 0, a.Double("--top-p") ?? 1.0, a.ULong("--seed") ?? 0);
        SessionGrain.ToOptions(sampling);   // invalid options fail here, before any cluster starts
        return sampling;
    }

    private static int MaxTokens(ParsedArguments a, int fallback)
    {
        int maxTokens = a.Int("--max-tokens") ?? fallback;
        return maxTokens >= 1 ? maxTokens : throw new UsageException($"--max-tokens {maxTokens} must be at least 1");
    }

    private static string SessionId(ParsedArguments a) => a.String("--session") is { } id ? Names.Require("session", id) : NewSessionId();

    private static string NewSessionId() => $"s-{Guid.NewGuid():N}"[..14];

    private static int[] ParseIds(string text)
    {
        try
        {
            var ids = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray();
            return ids.Length > 0 ? ids : throw new UsageException("--prompt-ids is empty");
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            throw new UsageException($"--prompt-ids '{text}' must be comma-separated integers");
        }
    }

    /// <summary>Progress for a person watching: on stderr, and only when stderr is a terminal unless it is the summary.</summary>
    private static void Progress(string message, bool always = false)
    {
        if (always || !Console.IsErrorRedirected) Console.Error.WriteLine(message);
    }
}
