using System.Globalization;
using TauCluster.Engine;
using TauCluster.Training;
using static TauCluster.Client.CommandSupport;

namespace TauCluster.Client;

/// <summary>How an option's value is read from the command line.</summary>
internal enum OptionKind { Flag, Text, Int, Double, ULong }

/// <summary>
/// One option of <c>tau train</c>: its name and value kind; how <c>tau train --help</c> shows it (the value's placeholder,
/// what it does, its default); whether <c>--resume</c> accepts it; and how it sets <see cref="TrainingOptions"/>.
/// </summary>
internal sealed record TrainOption(string Name, OptionKind Kind, string Value, string Help, Func<TrainingOptions, object>? Default,
    bool ChangeableOnResume, Func<TrainingOptions, ParsedArguments, TrainingOptions>? Set);

/// <summary>The options of <c>tau train</c>, declared once: its help, its parsing and both of its checks come from this table.</summary>
internal static class TrainOptionTable
{
    /// <summary>
    /// Every option, by help section. The order is the order in which the options set <see cref="TrainingOptions"/>
    /// (the first mistake found is reported), and in which <c>--resume</c> names the options it refuses.
    /// </summary>
    public static readonly (string Heading, TrainOption[] Options)[] Sections =
    [
        ("Run:",
        [
            Flag("--resume", "continue the run in --out from its last checkpoint, with its own settings"),
            Text("--corpus", "FILE", "the text file, read as bytes (--resume: the same bytes, if moved)", null,
                (o, v) => o with { CorpusPath = v }, required: true, changeableOnResume: true),
            Text("--out", "DIR", "the run's directory: a new one, or with --resume the run to continue", null,
                (o, v) => o with { OutputDirectory = v }, required: true, changeableOnResume: true),
            Int("--threads", "N", "cores to use (results do not depend on it)", _ => "all", set: null, changeableOnResume: true),
        ]),
        ("Model (vocabulary 256, one token per byte, \"tokenizer\": \"bytes\"):",
        [
            Text("--attention", "tau|causal", "tau: λ-distance attention; causal: the q·k/√D baseline", d => d.Attention.ToString().ToLowerInvariant(),
                (o, v) => o with { Attention = v switch
                {
                    "tau" => AttentionKind.Tau,
                    "causal" => AttentionKind.Causal,
                    _ => throw new UsageException($"--attention '{v}' must be tau or causal"),
                } }),
            Int("--layers", "N", "transformer blocks", d => d.Layers, (o, v) => o with { Layers = v }),
            Int("--embd", "C", "embedding width, a multiple of H", d => d.Embedding, (o, v) => o with { Embedding = v }),
            Int("--heads", "H", "attention heads", d => d.Heads, (o, v) => o with { Heads = v }),
            Int("--kv-heads", "K", "key/value heads (must divide H)", _ => "= H", (o, v) => o with { KvHeads = v }),
            Int("--seq-len", "N", "context length in bytes", d => d.SequenceLength, (o, v) => o with { SequenceLength = v }),
            Double("--rope-base", "B", "RoPE frequency base", d => d.RopeBase, (o, v) => o with { RopeBase = v }),
            Double("--softcap", "S", "logit soft cap (0 = off)", d => d.Softcap, (o, v) => o with { Softcap = v }),
            Text("--manifold", "DIR", "tau's Laplacian from this manifold (copied into the model)", _ => "none",
                (o, v) => o with { ManifoldDirectory = v }),
            Text("--laplacian", "chain", "tau's Laplacian when no --manifold is given", _ => "chain",
                (o, v) => v != "chain" ? throw new UsageException($"--laplacian '{v}' must be chain (or give --manifold DIR)")
                    : o.ManifoldDirectory is not null ? throw new UsageException("give --laplacian chain or --manifold DIR, not both") : o),
            Text("--tau-mode", "MODE", "how τ is picked: fixed, median, mean or percentile", _ => "manifold's mode or fixed",
                (o, v) => o with { Taumode = Taumode(o) with { Mode = ParseTaumode(v) } }),
            Double("--tau", "T", "τ of the fixed mode", _ => new TaumodeConfig().Tau, (o, v) => o with { Taumode = Taumode(o) with { Tau = v } }),
            Double("--tau-temperature", "T", "scores are −|λq − λk| / T", _ => new TaumodeConfig().Temperature,
                (o, v) => o with { Taumode = Taumode(o) with { Temperature = v } }),
            Text("--tau-lambda", "after-rope|before-rope", "λ of the q, k head vectors after RoPE rotates them, or before", _ => "after-rope",
                (o, v) => o with { Taumode = Taumode(o) with { LambdaBeforeRope = v switch
                {
                    "after-rope" => false,
                    "before-rope" => true,
                    _ => throw new UsageException($"--tau-lambda '{v}' must be after-rope or before-rope"),
                } } }),
            Text("--tau-recency", "none|alibi", "alibi: scores − m·(i − j), m = 2^(−8(g+1)/K) for kv head g", _ => "none",
                (o, v) => o with { Taumode = Taumode(o) with { Recency = v switch
                {
                    "none" => TauRecency.None,
                    "alibi" => TauRecency.Alibi,
                    _ => throw new UsageException($"--tau-recency '{v}' must be none or alibi"),
                } } }),
        ]),
        ("Optimisation (AdamW, warm-up then cosine decay, global gradient-norm clipping):",
        [
            Int("--batch", "N", "sequences per step", d => d.BatchSize, (o, v) => o with { BatchSize = v }),
            Int("--steps", "N", "optimizer steps", d => d.Steps, (o, v) => o with { Steps = v }),
            Double("--lr", "X", "peak learning rate", d => d.LearningRate, (o, v) => o with { LearningRate = v }),
            Double("--min-lr-fraction", "F", "the decay ends at F × X", d => d.MinLearningRateFraction, (o, v) => o with { MinLearningRateFraction = v }),
            Int("--warmup", "N", "steps of linear warm-up", _ => "min(100, steps/10)", (o, v) => o with { WarmupSteps = v }),
            Double("--weight-decay", "W", "decoupled weight decay", d => d.WeightDecay, (o, v) => o with { WeightDecay = v }),
            Double("--beta1", "B", "first-moment decay", d => d.Beta1, (o, v) => o with { Beta1 = v }),
            Double("--beta2", "B", "second-moment decay", d => d.Beta2, (o, v) => o with { Beta2 = v }),
            Double("--adam-eps", "E", "Adam's ε", d => d.AdamEpsilon, (o, v) => o with { AdamEpsilon = v }),
            Double("--clip", "X", "gradient-norm threshold (0 = off)", d => d.GradientClip, (o, v) => o with { GradientClip = v }),
            ULong("--seed", "S", "weights and batches; the same options give the same model", d => d.Seed, (o, v) => o with { Seed = v }),
        ]),
        ("Evaluation and checkpoints:",
        [
            Int("--eval-every", "N", "validation loss every N steps", d => d.EvalEvery, (o, v) => o with { EvalEvery = v }),
            Int("--eval-sequences", "N", "validation windows per evaluation", d => d.EvalSequences, (o, v) => o with { EvalSequences = v }),
            Double("--val-fraction", "F", "the last F of the file is held out for validation", d => d.ValidationFraction,
                (o, v) => o with { ValidationFraction = v }),
            Int("--checkpoint-every", "N", "steps between checkpoints", _ => "every evaluation", (o, v) => o with { CheckpointEvery = v }),
        ]),
    ];

    public static readonly TrainOption[] All = [.. Sections.SelectMany(s => s.Options)];

    public static readonly string[] ValueOptions = [.. All.Where(o => o.Kind != OptionKind.Flag).Select(o => o.Name)];

    public static readonly string[] Flags = [.. All.Where(o => o.Kind == OptionKind.Flag).Select(o => o.Name)];

    /// <summary>A new run's options: every option that has a say, in the table's order, over the defaults.</summary>
    public static TrainingOptions TrainingOptionsFrom(ParsedArguments a) =>
        All.Aggregate(Defaults, (options, option) => option.Set?.Invoke(options, a) ?? options);

    /// <summary>The options that <c>--resume</c> refuses, in the table's order: those given that would change the run.</summary>
    public static string[] UnchangeableGiven(ParsedArguments a) => [.. All.Where(o => !o.ChangeableOnResume && a.Has(o.Name)).Select(o => o.Name)];

    /// <summary>An option's default as the help shows it.</summary>
    public static string? DefaultText(TrainOption option) =>
        option.Default is { } shown ? Convert.ToString(shown(Defaults), CultureInfo.InvariantCulture) : null;

    /// <summary>The defaults that the options change (the corpus and the output directory are required options).</summary>
    private static TrainingOptions Defaults => new() { CorpusPath = "", OutputDirectory = "" };

    private static TaumodeConfig Taumode(TrainingOptions o) => o.Taumode ?? new TaumodeConfig();

    private static TrainOption Flag(string name, string help) => new(name, OptionKind.Flag, "", help, null, ChangeableOnResume: true, Set: null);

    private static TrainOption Text(string name, string value, string help, Func<TrainingOptions, object>? shown,
        Func<TrainingOptions, string, TrainingOptions> set, bool required = false, bool changeableOnResume = false) =>
        new(name, OptionKind.Text, value, help, shown, changeableOnResume,
            (o, a) => (required ? a.Required(name) : a.String(name)) is { } v ? set(o, v) : o);

    private static TrainOption Int(string name, string value, string help, Func<TrainingOptions, object> shown,
        Func<TrainingOptions, int, TrainingOptions>? set, bool changeableOnResume = false) =>
        new(name, OptionKind.Int, value, help, shown, changeableOnResume, set is null ? null : (o, a) => a.Int(name) is { } v ? set(o, v) : o);

    private static TrainOption Double(string name, string value, string help, Func<TrainingOptions, object> shown,
        Func<TrainingOptions, double, TrainingOptions> set) =>
        new(name, OptionKind.Double, value, help, shown, false, (o, a) => a.Double(name) is { } v ? set(o, v) : o);

    private static TrainOption ULong(string name, string value, string help, Func<TrainingOptions, object> shown,
        Func<TrainingOptions, ulong, TrainingOptions> set) =>
        new(name, OptionKind.ULong, value, help, shown, false, (o, a) => a.ULong(name) is { } v ? set(o, v) : o);
}
