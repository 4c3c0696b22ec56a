using System.Text.Json.Serialization;
using TauCluster.Engine;

namespace TauCluster.Training;

/// <summary>Training options that make no run; the message names the option (as <c>tau train</c> spells it) and why.</summary>
public sealed class InvalidTrainingOptionsException(string message) : TauException(message);

/// <summary>
/// Everything that defines a training run: the corpus, the model's shape and the optimisation. A run is a pure function
/// of these (and the corpus bytes): the same options give the same weights, whatever the thread count, also across a
/// resume. Models are byte-level (vocabulary 256, <c>"tokenizer": "bytes"</c>).
/// </summary>
public sealed record TrainingOptions
{
    public const int ByteVocabulary = 256;

    /// <summary>A text file, read as bytes; its last <see cref="ValidationFraction"/> is held out for validation.</summary>
    public required string CorpusPath { get; init; }

    /// <summary>The checkpoint directory: a servable model directory plus the training state and log.</summary>
    public required string OutputDirectory { get; init; }

    public AttentionKind Attention { get; init; } = AttentionKind.Tau;
    public int Layers { get; init; } = 4;
    public int Embedding { get; init; } = 128;
    public int Heads { get; init; } = 4;

    /// <summary>Key/value heads for grouped-query attention; 0 means as many as <see cref="Heads"/>.</summary>
    public int KvHeads { get; init; }

    public int SequenceLength { get; init; } = 128;
    public double RopeBase { get; init; } = 10000.0;
    public double Softcap { get; init; } = 15.0;

    /// <summary>Tau models: an arrowspace manifold directory for the Laplacian (copied into the model); null for the chain Laplacian.</summary>
    public string? ManifoldDirectory { get; init; }

    /// <summary>Tau models: the taumode block of config.json; null for the defaults (the manifold's mode, else fixed τ = 1).</summary>
    public TaumodeConfig? Taumode { get; init; }

    public int BatchSize { get; init; } = 16;
    public int Steps { get; init; } = 1000;
    public double LearningRate { get; init; } = 3e-3;

    /// <summary>The cosine decay ends at this fraction of <see cref="LearningRate"/>.</summary>
    public double MinLearningRateFraction { get; init; } = 0.1;

    /// <summary>Steps of linear warm-up; null for min(100, Steps / 10).</summary>
    public int? WarmupSteps { get; init; }
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double AdamEpsilon { get; init; } = 1e-8;

    /// <summary>Global gradient-norm clipping threshold; 0 turns clipping off.</summary>
    public double GradientClip { get; init; } = 1.0;

    public ulong Seed { get; init; }
    public int EvalEvery { get; init; } = 100;

    /// <summary>Validation windows per evaluation, evenly spaced over the held-out bytes (the same ones every time).</summary>
    public int EvalSequences { get; init; } = 64;

    public double ValidationFraction { get; init; } = 0.05;

    /// <summary>Steps between checkpoints; 0 means at every evaluation.</summary>
    public int CheckpointEvery { get; init; }

    [JsonIgnore]
    public int EffectiveKvHeads => KvHeads > 0 ? KvHeads : Heads;

    [JsonIgnore]
    public int EffectiveWarmupSteps => WarmupSteps ?? Math.Min(100, Steps / 10);

    [JsonIgnore]
    public int EffectiveCheckpointEvery => CheckpointEvery > 0 ? CheckpointEvery : EvalEvery;

    /// <summary>The model's config.json (the manifold directory is filled in when the model is saved with one).</summary>
    public ModelConfig ModelConfig() => new ModelConfig(
        VocabSize: ByteVocabulary, NLayer: Layers, NHead: Heads, NKvHead: EffectiveKvHeads, NEmbd: Embedding,
        SequenceLen: SequenceLength, RopeBase: RopeBase, Softcap: Softcap, Attention: Attention,
        Taumode: Taumode, Tokenizer: "bytes").Validate();

    /// <summary>Throws <see cref="InvalidTrainingOptionsException"/> naming the first option that makes no run.</summary>
    public TrainingOptions Validate()
    {
        Require(!string.IsNullOrWhiteSpace(CorpusPath), "--corpus", CorpusPath, "must name a text file");
        Require(!string.IsNullOrWhiteSpace(OutputDirectory), "--out", OutputDirectory, "must name a directory");
        Require(Layers >= 1, "--layers", Layers, "must be at least 1");
        Require(Heads >= 1, "--heads", Heads, "must be at least 1");
        Require(KvHeads >= 0, "--kv-heads", KvHeads, "must be positive");
        Require(Embedding >= 2 && Embedding % Heads == 0, "--embd", Embedding, $"must be a multiple of --heads ({Heads})");
        Require(Embedding / Heads % 2 == 0, "--embd", Embedding, $"must give an even head dimension for RoPE (--embd / --heads = {Embedding / Heads})");
        Require(Heads % EffectiveKvHeads == 0, "--kv-heads", EffectiveKvHeads, $"must divide --heads ({Heads})");
        Require(SequenceLength >= 1, "--seq-len", SequenceLength, "must be at least 1");
        Require(double.IsFinite(RopeBase) && RopeBase > 0, "--rope-base", RopeBase, "must be positive");
        Require(double.IsFinite(Softcap) && Softcap >= 0, "--softcap", Softcap, "must be 0 (off) or positive");
        Require(ManifoldDirectory is null || Attention == AttentionKind.Tau, "--manifold", ManifoldDirectory, "only applies to tau attention");
        Require(BatchSize >= 1, "--batch", BatchSize, "must be at least 1");
        Require(Steps >= 1, "--steps", Steps, "must be at least 1");
        Require(double.IsFinite(LearningRate) && LearningRate > 0, "--lr", LearningRate, "must be positive");
        Require(MinLearningRateFraction is >= 0 and <= 1, "--min-lr-fraction", MinLearningRateFraction, "must lie in [0, 1]");
        Require(EffectiveWarmupSteps >= 0 && EffectiveWarmupSteps <= Steps, "--warmup", EffectiveWarmupSteps, $"must lie in [0, --steps = {Steps}]");
        Require(double.IsFinite(WeightDecay) && WeightDecay >= 0, "--weight-decay", WeightDecay, "must be 0 or positive");
        Require(Beta1 is >= 0 and < 1, "--beta1", Beta1, "must lie in [0, 1)");
        Require(Beta2 is >= 0 and < 1, "--beta2", Beta2, "must lie in [0, 1)");
        Require(double.IsFinite(AdamEpsilon) && AdamEpsilon > 0, "--adam-eps", AdamEpsilon, "must be positive");
        Require(double.IsFinite(GradientClip) && GradientClip >= 0, "--clip", GradientClip, "must be 0 (off) or positive");
        Require(EvalEvery >= 1, "--eval-every", EvalEvery, "must be at least 1");
        Require(EvalSequences >= 1, "--eval-sequences", EvalSequences, "must be at least 1");
        Require(ValidationFraction is > 0 and < 1, "--val-fraction", ValidationFraction, "must lie strictly between 0 and 1");
        Require(CheckpointEvery >= 0, "--checkpoint-every", CheckpointEvery, "must be 0 (at every evaluation) or positive");
        try
        {
            ModelConfig();
        }
        catch (ModelFormatException e)
        {
            throw new InvalidTrainingOptionsException($"the model is not valid: {e.Message}");
        }
        return this;
    }

    private static void Require(bool ok, string option, object? value, string why)
    {
        if (!ok) throw new InvalidTrainingOptionsException($"{option} {Format(value)} {why}");
    }

    private static string Format(object? value) => value switch
    {
        null => "(none)",
        double d => d.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
