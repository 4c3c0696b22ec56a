using System.CommandLine;
using System.Numerics;
using TauCluster.Engine;
using TauCluster.Training;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>
/// One option of <c>tau train</c>: the option itself (its name, value, help and default), whether <c>--resume</c>
/// accepts it, and how it sets <see cref="TrainingOptions"/> when given.
/// </summary>
internal sealed record TrainOption(Option Option, bool ChangeableOnResume, Func<TrainingOptions, ParseResult, TrainingOptions>? Set);

/// <summary>The options of <c>tau train</c>, declared once: its help, its parsing and both of its checks come from this table.</summary>
internal static class TrainOptionTable
{
    public static readonly Option<bool> Resume = Flag("--resume", "continue the run in --out from its last checkpoint, with its own settings");

    public static readonly Option<string> Corpus = CommandSupport.Text("--corpus", "FILE", "the text file, read as bytes (--resume: the same bytes, if moved)");

    public static readonly Option<string> Out = CommandSupport.Text("--out", "DIR", "the run's directory: a new one, or with --resume the run to continue", required: true);

    public static readonly Option<int?> Threads = OptionalNumber<int>("--threads", "N", WithDefault("cores to use (results do not depend on it)", "all"));

    /// <summary>
    /// Every option, in the help's order, which is the order in which the options set <see cref="TrainingOptions"/>
    /// (the first mistake found is reported), and in which <c>--resume</c> names the options it refuses.
    /// </summary>
    public static readonly TrainOption[] All =
    [
        // The run.
        new(Resume, ChangeableOnResume: true, Set: null),
        new(Corpus, ChangeableOnResume: true, Set: (o, r) => r.Given(Corpus) ? o with { CorpusPath = r.GetValue(Corpus)! }
            : throw new UsageException("Option '--corpus' is required.")),   // by a new run: --resume reads the run's own
        new(Out, ChangeableOnResume: true, Set: (o, r) => o with { OutputDirectory = r.GetValue(Out)! }),
        new(Threads, ChangeableOnResume: true, Set: null),
        // The model: vocabulary 256, one token per byte ("tokenizer": "bytes").
        Text("--attention", "tau|causal", "tau: λ-distance attention; causal: the q·k/√D baseline", "tau",
            (o, v) => o with { Attention = v switch
            {
                "tau" => AttentionKind.Tau,
                "causal" => AttentionKind.Causal,
                _ => throw new UsageException($"--attention '{v}' must be tau or causal"),
            } }),
        Number("--layers", "N", "transformer blocks", d => d.Layers, (o, v) => o with { Layers = v }),
        Number("--embd", "C", "embedding width, a multiple of H", d => d.Embedding, (o, v) => o with { Embedding = v }),
        Number("--heads", "H", "attention heads", d => d.Heads, (o, v) => o with { Heads = v }),
        Number<int>("--kv-heads", "K", "key/value heads (must divide H)", null, (o, v) => o with { KvHeads = v }, described: "= H"),
        Number("--seq-len", "N", "context length in bytes", d => d.SequenceLength, (o, v) => o with { SequenceLength = v }),
        Number("--rope-base", "B", "RoPE frequency base", d => d.RopeBase, (o, v) => o with { RopeBase = v }),
        Number("--softcap", "S", "logit soft cap (0 = off)", d => d.Softcap, (o, v) => o with { Softcap = v }),
        Text("--manifold", "DIR", "tau's Laplacian from this manifold (copied into the model)", "none",
            (o, v) => o with { ManifoldDirectory = v }),
        Text("--laplacian", "chain", "tau's Laplacian when no --manifold is given", "chain",
            (o, v) => v != "chain" ? throw new UsageException($"--laplacian '{v}' must be chain (or give --manifold DIR)")
                : o.ManifoldDirectory is not null ? throw new UsageException("give --laplacian chain or --manifold DIR, not both") : o),
        Text("--tau-mode", "MODE", "how τ is picked: fixed, median, mean or percentile", "the manifold's mode, or fixed",
            (o, v) => o with { Taumode = Taumode(o) with { Mode = ParseTaumode(v) } }),
        Number("--tau", "T", "τ of the fixed mode", _ => new TaumodeConfig().Tau, (o, v) => o with { Taumode = Taumode(o) with { Tau = v } }),
        Number("--tau-temperature", "T", "scores are −|λq − λk| / T", _ => new TaumodeConfig().Temperature,
            (o, v) => o with { Taumode = Taumode(o) with { Temperature = v } }),
        Text("--tau-lambda", "after-rope|before-rope", "λ of the q, k head vectors after RoPE rotates them, or before", "after-rope",
            (o, v) => o with { Taumode = Taumode(o) with { LambdaBeforeRope = v switch
            {
                "after-rope" => false,
                "before-rope" => true,
                _ => throw new UsageException($"--tau-lambda '{v}' must be after-rope or before-rope"),
            } } }),
        Text("--tau-recency", "none|alibi", "alibi: scores − m·(i − j), m = 2^(−8(g+1)/K) for kv head g", "none",
            (o, v) => o with { Taumode = Taumode(o) with { Recency = v switch
            {
                "none" => TauRecency.None,
                "alibi" => TauRecency.Alibi,
                _ => throw new UsageException($"--tau-recency '{v}' must be none or alibi"),
            } } }),
        FlagOption("--tau-learn-temperature", "learn each kv head's temperature: λ times a learned gain per layer and kv head",
            o => o with { Taumode = Taumode(o) with { LearnedTemperature = true } }),
        Number<int>("--tau-projection", "F", "λ of learned maps of the q, k head vectors into F dimensions (the seed's projected regime); the Laplacian has F",
            null, (o, v) => o with { Taumode = Taumode(o) with { ProjectionDim = v } }, described: "none: λ of the head vectors"),
        // Optimisation: AdamW, warm-up then cosine decay, global gradient-norm clipping.
        Number("--batch", "N", "sequences per step", d => d.BatchSize, (o, v) => o with { BatchSize = v }),
        Number("--steps", "N", "optimizer steps", d => d.Steps, (o, v) => o with { Steps = v }),
        Number("--lr", "X", "peak learning rate", d => d.LearningRate, (o, v) => o with { LearningRate = v }),
        Number("--min-lr-fraction", "F", "the decay ends at F × X", d => d.MinLearningRateFraction, (o, v) => o with { MinLearningRateFraction = v }),
        Number<int>("--warmup", "N", "steps of linear warm-up", null, (o, v) => o with { WarmupSteps = v }, described: "min(100, steps/10)"),
        Number("--weight-decay", "W", "decoupled weight decay", d => d.WeightDecay, (o, v) => o with { WeightDecay = v }),
        Number("--beta1", "B", "first-moment decay", d => d.Beta1, (o, v) => o with { Beta1 = v }),
        Number("--beta2", "B", "second-moment decay", d => d.Beta2, (o, v) => o with { Beta2 = v }),
        Number("--adam-eps", "E", "Adam's ε", d => d.AdamEpsilon, (o, v) => o with { AdamEpsilon = v }),
        Number("--clip", "X", "gradient-norm threshold (0 = off)", d => d.GradientClip, (o, v) => o with { GradientClip = v }),
        Number("--seed", "S", "weights and batches; the same options give the same model", d => d.Seed, (o, v) => o with { Seed = v }),
        // Evaluation and checkpoints.
        Number("--eval-every", "N", "validation loss every N steps", d => d.EvalEvery, (o, v) => o with { EvalEvery = v }),
        Number("--eval-sequences", "N", "validation windows per evaluation", d => d.EvalSequences, (o, v) => o with { EvalSequences = v }),
        Number("--val-fraction", "F", "the last F of the file is held out for validation", d => d.ValidationFraction,
            (o, v) => o with { ValidationFraction = v }),
        Number<int>("--checkpoint-every", "N", "steps between checkpoints", null, (o, v) => o with { CheckpointEvery = v }, described: "every evaluation"),
    ];

    /// <summary>A new run's options: every option given, in the table's order, over the defaults.</summary>
    public static TrainingOptions TrainingOptionsFrom(ParseResult result) =>
        All.Aggregate(Defaults, (options, option) => option.Set?.Invoke(options, result) ?? options);

    /// <summary>The options that <c>--resume</c> refuses, in the table's order: those given that would change the run.</summary>
    public static string[] UnchangeableGiven(ParseResult result) => [.. All.Where(o => !o.ChangeableOnResume && result.Given(o.Option)).Select(o => o.Option.Name)];

    /// <summary>The defaults that the options change (the corpus and the output directory are required options).</summary>
    private static TrainingOptions Defaults => new() { CorpusPath = "", OutputDirectory = "" };

    private static TaumodeConfig Taumode(TrainingOptions o) => o.Taumode ?? new TaumodeConfig();

    /// <summary>A text option; its default is only shown (the defaults are <see cref="TrainingOptions"/>'s, set when not given).</summary>
    private static TrainOption Text(string name, string value, string help, string shown, Func<TrainingOptions, string, TrainingOptions> set)
    {
        var option = CommandSupport.Text(name, value, help, shown);
        return new(option, ChangeableOnResume: false, (o, r) => r.Given(option) ? set(o, r.GetValue(option)!) : o);
    }

    private static TrainOption FlagOption(string name, string help, Func<TrainingOptions, TrainingOptions> set)
    {
        var option = Flag(name, help);
        return new(option, ChangeableOnResume: false, (o, r) => r.GetValue(option) ? set(o) : o);
    }

    /// <summary>
    /// A number; its default is <paramref name="shown"/> of <see cref="TrainingOptions"/>'s defaults, or, where a rule
    /// sets it, <paramref name="described"/>.
    /// </summary>
    private static TrainOption Number<T>(string name, string value, string help, Func<TrainingOptions, T>? shown,
        Func<TrainingOptions, T, TrainingOptions> set, string? described = null) where T : struct, INumber<T>
    {
        var option = OptionalNumber<T>(name, value, described is null ? help : WithDefault(help, described));
        if (shown is not null) option.DefaultValueFactory = _ => shown(Defaults);
        return new(option, ChangeableOnResume: false, (o, r) => r.Given(option) ? set(o, r.GetValue(option)!.Value) : o);
    }
}
