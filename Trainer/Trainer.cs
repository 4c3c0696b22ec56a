using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using TauCluster.Engine;

namespace TauCluster.Training;

/// <summary>What one step did, for a progress display.</summary>
public readonly record struct TrainingProgress(
    int Step, int Steps, double LearningRate, double TrainLoss, double? ValidationLoss, double GradientNorm,
    double TokensPerSecond, double ElapsedSeconds, bool Checkpointed);

/// <summary>
/// Trains a byte-level Tauformer (or dot-product) GPT from a text file: seeded random windows, AdamW with global
/// gradient-norm clipping and a warm-up + cosine learning rate, periodic validation, a CSV log and resumable checkpoints.
/// <para>
/// The output directory is at every checkpoint a model directory that the Engine loads (<c>config.json</c>,
/// <c>model.safetensors</c>, <c>manifold/</c> for a manifold Laplacian) plus <c>training.json</c> (step, options,
/// generator state, loss history; it names the state file), <c>training_state-STEP.safetensors</c> (parameters and
/// AdamW moments) and <c>train_log.csv</c>. A run killed at any moment resumes from its last checkpoint and ends with
/// the same weights as a run that was never interrupted.
/// </para>
/// </summary>
public sealed class Trainer
{
    public const string StateFile = "training.json";
    public const string LogFile = "train_log.csv";
    private const string Format = "taucluster-training/1";

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        WriteIndented = true,
    };

    private readonly Gpt<float> model;
    private readonly AdamW optimizer;
    private readonly ByteCorpus corpus;
    private readonly Xoshiro256 rng;
    private readonly Laplacian? laplacian;
    private readonly ParallelOptions parallel;
    private readonly List<double> trainLosses = [];
    private readonly List<(int Step, double Loss)> validationLosses = [];
    private readonly int[] inputs, targets;
    private double elapsedSeconds;

    private Trainer(TrainingOptions options, ByteCorpus corpus, Laplacian? laplacian, int threads)
    {
        Options = options;
        this.corpus = corpus;
        this.laplacian = laplacian;
        ModelConfig = options.ModelConfig();
        parallel = new ParallelOptions { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount };
        // The domain as TauModel resolves it, so that the trained model scores as it will serve: the chain Laplacian
        // unless a manifold is given.
        var domain = ModelConfig.Attention != AttentionKind.Tau ? null
            : ModelConfig.TaumodeOrDefault.Resolve(laplacian ?? Laplacian.Chain(ModelConfig.LambdaDim));
        model = new Gpt<float>(ModelConfig, domain, options.BatchSize, options.SequenceLength, threads);
        optimizer = new AdamW(model.Layout, options.Beta1, options.Beta2, options.AdamEpsilon, options.WeightDecay);
        rng = new Xoshiro256(options.Seed);
        inputs = new int[options.BatchSize * options.SequenceLength];
        targets = new int[inputs.Length];
    }

    public TrainingOptions Options { get; }
    public ModelConfig ModelConfig { get; }

    /// <summary>Updates done so far.</summary>
    public int Step { get; private set; }

    public IReadOnlyList<double> TrainLosses => trainLosses;
    public IReadOnlyList<(int Step, double Loss)> ValidationLosses => validationLosses;

    /// <summary>The current weights, in the training layout (<see cref="Gpt{T}.Layout"/>).</summary>
    public ReadOnlySpan<float> Parameters => model.Parameters;

    public string Directory => Options.OutputDirectory;

    /// <summary>Starts a new run in an output directory that holds no run yet.</summary>
    public static Trainer Create(TrainingOptions options, int threads = 0)
    {
        options.Validate();
        if (File.Exists(Path.Combine(options.OutputDirectory, StateFile)))
            throw new InvalidTrainingOptionsException($"--out {options.OutputDirectory} already holds a training run; resume it (--resume) or choose another directory");
        if (OutputDirectory.NotEmptyError(options.OutputDirectory, LogFile, ".checkpoint") is { } notEmpty)
            throw new InvalidTrainingOptionsException(notEmpty);
        var laplacian = options.ManifoldDirectory is { } manifold ? Manifold.Load(manifold) : null;
        var config = options.ModelConfig();
        laplacian?.RequireDimension(config.LambdaDim, config.TaumodeOrDefault.ProjectionDim > 0
            ? $"--tau-projection {config.LambdaDim}" : $"--embd {options.Embedding} / --heads {options.Heads}");
        var corpus = ByteCorpus.Load(options.CorpusPath, options.ValidationFraction, options.SequenceLength);
        var trainer = new Trainer(options, corpus, laplacian, threads);
        InitializeWeights(trainer.model.Layout, trainer.model.Parameters, options.Seed);
        return trainer;
    }

    /// <summary>
    /// Continues the run in <paramref name="directory"/> from its last checkpoint. The options are the run's own; the
    /// corpus may be given anew (another path) but must hold the same bytes.
    /// </summary>
    public static Trainer Resume(string directory, string? corpusPath = null, int threads = 0)
    {
        var statePath = Path.Combine(directory, StateFile);
        if (!File.Exists(statePath)) throw new InvalidTrainingOptionsException($"--out {directory} holds no training run to resume ({StateFile} not found)");
        JsonObject state;
        TrainingOptions options;
        try
        {
            state = JsonNode.Parse(File.ReadAllText(statePath)) as JsonObject ?? throw new JsonException("not an object");
            if ((string?)state["format"] != Format) throw new JsonException($"format is not {Format}");
            options = state["options"].Deserialize<TrainingOptions>(Json) ?? throw new JsonException("no options");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new ModelFormatException($"{statePath}: not a training state ({e.Message})", e);
        }
        options = options with { OutputDirectory = directory, CorpusPath = corpusPath ?? options.CorpusPath };
        options.Validate();

        // The Laplacian as the Engine loads the saved model: the config's "chain" or its manifold directory.
        var saved = TauModel.Load(directory);
        var corpus = ByteCorpus.Load(options.CorpusPath, options.ValidationFraction, options.SequenceLength);
        string expected = (string?)state["corpus"]?["sha256"] ?? "";
        if (corpus.Sha256 != expected)
            throw new InvalidTrainingOptionsException($"--corpus {options.CorpusPath} is not the corpus this run trained on (SHA-256 {corpus.Sha256[..12]}…, expected {expected[..Math.Min(12, expected.Length)]}…)");
        var trainer = new Trainer(options, corpus, saved.Config.ManifoldDirectory is null ? null : saved.DefaultDomain?.Laplacian, threads);
        trainer.Restore(state, directory);
        return trainer;
    }

    /// <summary>Trains until <see cref="TrainingOptions.Steps"/>, evaluating, logging and checkpointing on the way.
    /// On cancellation it saves a checkpoint at the current step, then throws <see cref="OperationCanceledException"/>.</summary>
    public void Run(CancellationToken cancellation = default, Action<TrainingProgress>? progress = null)
    {
        System.IO.Directory.CreateDirectory(Directory);
        using var log = new TrainingLog(Path.Combine(Directory, LogFile), Step);
        while (Step < Options.Steps)
        {
            if (cancellation.IsCancellationRequested)
            {
                SaveCheckpoint();
                throw new OperationCanceledException("training interrupted; checkpoint saved", cancellation);
            }
            var clock = Stopwatch.StartNew();
            var (loss, norm, rate) = TrainStep();
            double stepSeconds = clock.Elapsed.TotalSeconds;
            double? validation = Step % Options.EvalEvery == 0 || Step == Options.Steps ? ValidationLoss() : null;
            if (validation is { } v) validationLosses.Add((Step, v));
            elapsedSeconds += clock.Elapsed.TotalSeconds;
            double tokensPerSecond = inputs.Length / stepSeconds;
            log.Append(Step, rate, loss, validation, norm, tokensPerSecond, elapsedSeconds);
            bool checkpoint = Step % Options.EffectiveCheckpointEvery == 0 || Step == Options.Steps;
            if (checkpoint) SaveCheckpoint();
            progress?.Invoke(new TrainingProgress(Step, Options.Steps, rate, loss, validation, norm, tokensPerSecond, elapsedSeconds, checkpoint));
        }
    }

    /// <summary>One update on one random batch: returns its loss (before the update), the gradient norm (before clipping) and the rate.</summary>
    public (double Loss, double GradientNorm, double LearningRate) TrainStep()
    {
        corpus.SampleBatch(rng, Options.BatchSize, Options.SequenceLength, inputs, targets);
        double loss = model.Forward(inputs, targets);
        model.Backward();
        double norm = optimizer.GradientNorm(model.Gradients, parallel);
        if (Options.GradientClip > 0 && norm > Options.GradientClip)
        {
            float scale = (float)(Options.GradientClip / (norm + 1e-6));
            System.Numerics.Tensors.TensorPrimitives.Multiply(model.Gradients, scale, model.Gradients);
        }
        double rate = LearningRateSchedule.At(Step, Options.Steps, Options.EffectiveWarmupSteps, Options.LearningRate, Options.MinLearningRateFraction);
        optimizer.Update(model.Parameters, model.Gradients, rate, parallel);
        trainLosses.Add(loss);
        Step++;
        return (loss, norm, rate);
    }

    /// <summary>Mean cross-entropy (nats per byte) over the fixed validation windows.</summary>
    public double ValidationLoss()
    {
        int n = Options.EvalSequences, T = Options.SequenceLength, batch = Options.BatchSize;
        double total = 0;
        for (int first = 0; first < n; first += batch)
        {
            int count = Math.Min(batch, n - first);
            for (int i = 0; i < count; i++)
                corpus.Window(corpus.ValidationStart(first + i, n, T), T, inputs.AsSpan(i * T, T), targets.AsSpan(i * T, T));
            total += model.Forward(inputs.AsSpan(0, count * T), targets.AsSpan(0, count * T)) * count;
        }
        return total / n;
    }

    /// <summary>The current weights as an Engine model (what <c>tau generate</c> serves from the checkpoint).</summary>
    public TauModel ToModel() => TauModel.Create(ModelConfig, model.Layout.ToWeights(model.Parameters), laplacian);

    /// <summary>
    /// Writes the model files, then the state file of this step, then training.json naming it (the switch), then
    /// removes older state files: a kill at any point leaves training.json naming a complete state.
    /// </summary>
    public void SaveCheckpoint()
    {
        System.IO.Directory.CreateDirectory(Directory);
        string staging = Path.Combine(Directory, ".checkpoint");
        if (System.IO.Directory.Exists(staging)) System.IO.Directory.Delete(staging, recursive: true);
        ToModel().Save(staging);
        foreach (var file in new[] { TauModel.ConfigFile, TauModel.WeightsFile })
            File.Move(Path.Combine(staging, file), Path.Combine(Directory, file), overwrite: true);
        if (System.IO.Directory.Exists(Path.Combine(staging, "manifold")) && !System.IO.Directory.Exists(Path.Combine(Directory, "manifold")))
            System.IO.Directory.Move(Path.Combine(staging, "manifold"), Path.Combine(Directory, "manifold"));
        System.IO.Directory.Delete(staging, recursive: true);

        string stateName = $"training_state-{Step:D8}.safetensors";
        var layout = model.Layout;
        var tensors = layout.Tensors.Select(t => new Tensor($"param/{t.Name}", t.Shape, model.Parameters.AsSpan(t.Offset, t.Length).ToArray()))
            .Concat(layout.Tensors.Select(t => new Tensor($"adam_m/{t.Name}", t.Shape, optimizer.FirstMoment.AsSpan(t.Offset, t.Length).ToArray())))
            .Concat(layout.Tensors.Select(t => new Tensor($"adam_v/{t.Name}", t.Shape, optimizer.SecondMoment.AsSpan(t.Offset, t.Length).ToArray())));
        SafeTensors.Write(Path.Combine(Directory, stateName + ".tmp"), tensors);
        File.Move(Path.Combine(Directory, stateName + ".tmp"), Path.Combine(Directory, stateName), overwrite: true);

        var s = rng.State;
        var state = new JsonObject
        {
            ["format"] = Format,
            ["step"] = Step,
            ["state_file"] = stateName,
            ["adam_updates"] = optimizer.Updates,
            ["rng_state"] = new JsonArray(Hex(s.S0), Hex(s.S1), Hex(s.S2), Hex(s.S3)),
            ["corpus"] = new JsonObject { ["path"] = Path.GetFullPath(Options.CorpusPath), ["bytes"] = corpus.Length, ["sha256"] = corpus.Sha256 },
            ["options"] = JsonSerializer.SerializeToNode(Options with
            {
                OutputDirectory = ".",
                CorpusPath = Path.GetFullPath(Options.CorpusPath),
                ManifoldDirectory = Options.ManifoldDirectory is { } m ? Path.GetFullPath(m) : null,
            }, Json),
            ["elapsed_seconds"] = elapsedSeconds,
            ["train_loss"] = new JsonArray(trainLosses.Select(l => (JsonNode)l).ToArray()),
            ["validation_loss"] = new JsonArray(validationLosses.Select(v => (JsonNode)new JsonObject { ["step"] = v.Step, ["loss"] = v.Loss }).ToArray()),
        };
        File.WriteAllText(Path.Combine(Directory, StateFile + ".tmp"), state.ToJsonString(Json));
        File.Move(Path.Combine(Directory, StateFile + ".tmp"), Path.Combine(Directory, StateFile), overwrite: true);

        foreach (var old in System.IO.Directory.EnumerateFiles(Directory, "training_state-*.safetensors"))
            if (Path.GetFileName(old) != stateName) File.Delete(old);
    }

    private void Restore(JsonObject state, string directory)
    {
        string statePath = Path.Combine(directory, StateFile);
        try
        {
            Step = (int)state["step"]!;
            optimizer.Updates = (int)state["adam_updates"]!;
            var words = state["rng_state"]!.AsArray().Select(w => ulong.Parse((string)w!, NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray();
            rng.State = new RngState(words[0], words[1], words[2], words[3]);
            elapsedSeconds = (double)state["elapsed_seconds"]!;
            trainLosses.AddRange(state["train_loss"]!.AsArray().Select(l => (double)l!));
            validationLosses.AddRange(state["validation_loss"]!.AsArray().Select(v => ((int)v!["step"]!, (double)v["loss"]!)));
        }
        catch (Exception e) when (e is NullReferenceException or InvalidOperationException or FormatException or JsonException)
        {
            throw new ModelFormatException($"{statePath}: malformed training state ({e.Message})", e);
        }
        var file = Path.Combine(directory, (string?)state["state_file"] ?? throw new ModelFormatException($"{statePath}: no state_file"));
        var tensors = SafeTensors.Read(file);
        foreach (var (prefix, target) in new[] { ("param", model.Parameters), ("adam_m", optimizer.FirstMoment), ("adam_v", optimizer.SecondMoment) })
            foreach (var t in model.Layout.Tensors)
            {
                if (!tensors.TryGetValue($"{prefix}/{t.Name}", out var tensor) || !tensor.Shape.SequenceEqual(t.Shape))
                    throw new ModelFormatException($"{file}: tensor {prefix}/{t.Name} is missing or mis-shaped (expected [{t.Rows}, {t.Cols}])");
                tensor.Data.CopyTo(target, t.Offset);
            }
        if (trainLosses.Count != Step) throw new ModelFormatException($"{statePath}: {trainLosses.Count} losses for step {Step}");
    }

    /// <summary>
    /// The starting weights (as nanochat): embeddings N(0, 1); q, k, v and the MLP's first layer N(0, 1/C); the two
    /// projections back into the residual stream and the head start at zero, so every block starts as the identity.
    /// The λ log-gains start at 0 (every head at the config's temperature); the λ projections N(0, 1/D), or the identity
    /// when they keep the dimension, so that a projected model starts as the native one.
    /// </summary>
    public static void InitializeWeights(ParameterLayout layout, float[] parameters, ulong seed)
    {
        var random = new Xoshiro256(seed ^ 0x5EED_1417_7A0F_0001UL);
        void Gaussian(ParameterTensor t, double std)
        {
            for (int i = t.Offset; i < t.Offset + t.Length; i++) parameters[i] = (float)(random.NextGaussian() * std);
        }
        void Zero(ParameterTensor t) => parameters.AsSpan(t.Offset, t.Length).Clear();
        Gaussian(layout.Embedding, 1.0);
        foreach (var l in layout.Layers)
        {
            Gaussian(l.Qkv, 1.0 / Math.Sqrt(l.Qkv.Cols));
            Zero(l.AttentionProjection);
            Gaussian(l.MlpUp, 1.0 / Math.Sqrt(l.MlpUp.Cols));
            Zero(l.MlpDown);
            if (l.LambdaLogGain is { } gain) Zero(gain);
            foreach (var projection in new[] { l.LambdaQueryProjection, l.LambdaKeyProjection })
            {
                if (projection is null) continue;
                if (projection.Rows != projection.Cols) { Gaussian(projection, 1.0 / Math.Sqrt(projection.Cols)); continue; }
                Zero(projection);
                for (int i = 0; i < projection.Rows; i++) parameters[projection.Offset + i * projection.Cols + i] = 1;
            }
        }
        Zero(layout.LmHead);
    }

    private static string Hex(ulong word) => word.ToString("x16", CultureInfo.InvariantCulture);
}

/// <summary>
/// train_log.csv: one row per step (step, lr, train_loss, val_loss, grad_norm, tokens_per_second, elapsed_seconds;
/// val_loss empty between evaluations). A resumed run keeps the rows up to its checkpoint and appends from there.
/// </summary>
internal sealed class TrainingLog : IDisposable
{
    public const string Header = "step,lr,train_loss,val_loss,grad_norm,tokens_per_second,elapsed_seconds";

    private readonly StreamWriter writer;

    public TrainingLog(string path, int keepThroughStep)
    {
        var kept = new List<string> { Header };
        if (File.Exists(path))
            kept.AddRange(File.ReadAllLines(path).Skip(1).Where(line =>
                int.TryParse(line.Split(',')[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int step) && step <= keepThroughStep));
        File.WriteAllLines(path, kept);
        writer = new StreamWriter(path, append: true) { AutoFlush = true };
    }

    public void Append(int step, double rate, double trainLoss, double? validationLoss, double gradientNorm, double tokensPerSecond, double elapsedSeconds) =>
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{step},{rate:G6},{trainLoss:F6},{(validationLoss is { } v ? v.ToString("F6", CultureInfo.InvariantCulture) : "")},{gradientNorm:G6},{tokensPerSecond:F1},{elapsedSeconds:F2}"));

    public void Dispose() => writer.Dispose();
}
