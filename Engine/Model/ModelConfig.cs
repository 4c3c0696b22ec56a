using System.Text.Json;
using System.Text.Json.Nodes;

namespace TauCluster.Engine;

public enum AttentionKind { Tau, Causal }

public enum TaumodeKind { Fixed, Median, Mean, Percentile }

/// <summary>
/// The <c>taumode</c> block of config.json, as configured: <see cref="Mode"/> null means the domain's own mode, else
/// fixed. Kept apart from the resolved <see cref="TaumodeSettings"/> because the same config scores against any
/// domain a session picks, and each domain may bring its own mode.
/// </summary>
/// <paramref name="LambdaBeforeRope"/>: λ of the query and key head vectors as projected, not rotated by RoPE first (the seed
/// rotates them). <paramref name="Recency"/>: a bias on each score by how far back its key lies (<see cref="RecencySlope"/>).
/// <paramref name="LearnedTemperature"/>: a learned gain per layer and kv head multiplies λq and λk, so that head's scores are
/// −|λq − λk| / (T / gain), a temperature of its own (weights <c>attn.lambda_log_gain</c>). <paramref name="ProjectionDim"/>:
/// 0 takes λ of the head vectors themselves (the seed's native regime); F &gt; 0 takes it of learned maps of them into F
/// dimensions, one for queries and one for keys per layer (the seed's projected regime), against a Laplacian of dimension F.
public sealed record TaumodeConfig(
    TaumodeKind? Mode = null,
    double Tau = 1.0,
    double Eps = 1e-6,
    double Temperature = 1.0,
    double Percentile = 0.5,
    bool LambdaBeforeRope = false,
    TauRecency Recency = TauRecency.None,
    bool LearnedTemperature = false,
    int ProjectionDim = 0)
{
    /// <summary>This config against one domain's Laplacian: the configured mode, else the domain's own, else fixed.</summary>
    public TaumodeSpec Resolve(Laplacian laplacian) =>
        new(laplacian, new TaumodeSettings(Mode ?? laplacian.DefaultTaumode ?? TaumodeKind.Fixed, Tau, Eps, Temperature, Percentile));

    /// <summary>
    /// The recency slope m of kv head <paramref name="kvHead"/> of <paramref name="kvHeads"/>: the score of the key j
    /// positions back becomes −|λq − λk| / T − m·j. ALiBi's slopes, m_g = 2^(−8(g+1)/G), one scale of memory per head;
    /// by kv head rather than query head, so that the query heads sharing a cache share its weights' factor e^(m·j).
    /// </summary>
    public float RecencySlope(int kvHead, int kvHeads) => Recency switch
    {
        TauRecency.Alibi => (float)Math.Pow(2, -8.0 * (kvHead + 1) / kvHeads),
        _ => 0,
    };
}

/// <summary>A bias on tau attention's scores by distance: none (the seed), or ALiBi's linear one.</summary>
public enum TauRecency { None, Alibi }

/// <summary>config.json of a model directory (DESIGN.md §2).</summary>
public sealed record ModelConfig(
    int VocabSize,
    int NLayer,
    int NHead,
    int NKvHead,
    int NEmbd,
    int SequenceLen = 2048,
    double RopeBase = 10000.0,
    double Softcap = 0.0,
    AttentionKind Attention = AttentionKind.Tau,
    string? ManifoldDirectory = null,
    TaumodeConfig? Taumode = null,
    string? Tokenizer = null)
{
    public int HeadDim => NEmbd / NHead;
    public int KvDim => NKvHead * HeadDim;
    public int MlpDim => 4 * NEmbd;

    /// <summary>Query heads per kv head (grouped-query attention): heads g·QueryGroup … (g + 1)·QueryGroup − 1 share kv head g.</summary>
    public int QueryGroup => NHead / NKvHead;

    /// <summary>The kv head that query head <paramref name="head"/> attends with: ⌊head / (NHead / NKvHead)⌋.</summary>
    public int KvHeadOf(int head) => KvHeadOf(head, NHead, NKvHead);

    /// <summary>
    /// The grouped-query rule itself, for those that hold a model's head counts without its config (a context shard's
    /// layout), so that every place maps heads the same way.
    /// </summary>
    public static int KvHeadOf(int head, int heads, int kvHeads) => head / (heads / kvHeads);

    public TaumodeConfig TaumodeOrDefault => Taumode ?? new TaumodeConfig();

    /// <summary>Whether RoPE rotates the query and key head vectors: always for dot products; for tau unless λ is taken before it.</summary>
    public bool RotatesHeads => Attention != AttentionKind.Tau || !TaumodeOrDefault.LambdaBeforeRope;

    /// <summary>The dimension λ is taken in, which the Laplacian must have: the projection's, else the head's.</summary>
    public int LambdaDim => TaumodeOrDefault.ProjectionDim > 0 ? TaumodeOrDefault.ProjectionDim : HeadDim;

    /// <summary>Whether λ needs weights of its own (a learned temperature, a projection): see <see cref="LambdaHeads"/>.</summary>
    public bool HasLambdaWeights => Attention == AttentionKind.Tau && (TaumodeOrDefault.LearnedTemperature || TaumodeOrDefault.ProjectionDim > 0);

    /// <summary>Throws <see cref="ModelFormatException"/> naming the first field that makes no model.</summary>
    public ModelConfig Validate()
    {
        Require(VocabSize > 0, "vocab_size", VocabSize, "must be positive");
        Require(NLayer > 0, "n_layer", NLayer, "must be positive");
        Require(NHead > 0, "n_head", NHead, "must be positive");
        Require(NKvHead > 0, "n_kv_head", NKvHead, "must be positive");
        Require(NEmbd > 0, "n_embd", NEmbd, "must be positive");
        Require(NEmbd % NHead == 0, "n_embd", NEmbd, $"must be a multiple of n_head ({NHead})");
        Require(NHead % NKvHead == 0, "n_kv_head", NKvHead, $"must divide n_head ({NHead})");
        Require(HeadDim % 2 == 0, "n_embd", NEmbd, $"must give an even head dimension for RoPE (n_embd / n_head = {HeadDim})");
        Require(SequenceLen > 0, "sequence_len", SequenceLen, "must be positive");
        Require(double.IsFinite(RopeBase) && RopeBase > 0, "rope_base", RopeBase, "must be a positive number");
        Require(double.IsFinite(Softcap) && Softcap >= 0, "softcap", Softcap, "must be 0 (off) or positive");
        var t = TaumodeOrDefault;
        Require(double.IsFinite(t.Eps) && t.Eps > 0, "taumode.eps", t.Eps, "must be positive");
        Require(double.IsFinite(t.Tau) && t.Tau > 0, "taumode.tau", t.Tau, "must be positive");
        Require(double.IsFinite(t.Temperature) && t.Temperature >= 0, "taumode.temperature", t.Temperature, "must be non-negative");
        Require(t.Percentile is >= 0 and <= 1, "taumode.percentile", t.Percentile, "must lie in [0, 1]");
        Require(Attention == AttentionKind.Tau || t.Recency == TauRecency.None, "taumode.recency", t.Recency, "only applies to tau attention");
        Require(Attention == AttentionKind.Tau || !t.LambdaBeforeRope, "taumode.lambda_before_rope", t.LambdaBeforeRope, "only applies to tau attention");
        Require(Attention == AttentionKind.Tau || !t.LearnedTemperature, "taumode.learned_temperature", t.LearnedTemperature, "only applies to tau attention");
        Require(Attention == AttentionKind.Tau || t.ProjectionDim == 0, "taumode.projection_dim", t.ProjectionDim, "only applies to tau attention");
        Require(t.ProjectionDim is 0 or (>= 2 and <= LambdaHeads.MaxProjectionDim), "taumode.projection_dim", t.ProjectionDim,
            $"must be 0 (none) or lie in [2, {LambdaHeads.MaxProjectionDim}]");
        Require(Tokenizer is null or "gpt2" or "bytes", "tokenizer", Tokenizer, "must be \"gpt2\", \"bytes\" or absent");
        return this;
    }

    private static void Require(bool ok, string field, object? value, string why)
    {
        if (!ok) throw new ModelFormatException($"config.json: {field} = {value ?? "null"} {why}");
    }

    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException($"config.json not found: {path}");
        return Parse(File.ReadAllText(path));
    }

    public static ModelConfig Parse(string json)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new ModelFormatException("config.json: the root must be a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"config.json: invalid JSON ({e.Message})", e);
        }

        int nHead = GetInt(root, "n_head", required: true)!.Value;
        var taumode = root["taumode"] is JsonObject tm ? ParseTaumodeConfig(tm) : null;
        var (attention, manifold) = (ParseAttention(root), ParseLaplacian(root));
        return new ModelConfig(
            VocabSize: GetInt(root, "vocab_size", true)!.Value,
            NLayer: GetInt(root, "n_layer", true)!.Value,
            NHead: nHead,
            NKvHead: GetInt(root, "n_kv_head", false) ?? nHead,
            NEmbd: GetInt(root, "n_embd", true)!.Value,
            SequenceLen: GetInt(root, "sequence_len", false) ?? 2048,
            RopeBase: GetDouble(root, "rope_base") ?? 10000.0,
            Softcap: GetDouble(root, "softcap") ?? 0.0,
            Attention: attention,
            ManifoldDirectory: manifold,
            Taumode: taumode,
            Tokenizer: GetString(root, "tokenizer")).Validate();
    }

    private static AttentionKind ParseAttention(JsonObject root) => GetString(root, "attention") switch
    {
        null or "tau" => AttentionKind.Tau,
        "causal" => AttentionKind.Causal,
        var other => throw new ModelFormatException($"config.json: attention = \"{other}\" must be \"tau\" or \"causal\""),
    };

    /// <summary>Returns the manifold directory, or null for the chain Laplacian.</summary>
    private static string? ParseLaplacian(JsonObject root) => root["laplacian"] switch
    {
        null => null,
        JsonValue v when v.TryGetValue<string>(out var s) && s == "chain" => null,
        JsonObject o when o["manifold"] is JsonValue m && m.TryGetValue<string>(out var dir) && dir.Length > 0 => dir,
        var other => throw new ModelFormatException($"config.json: laplacian = {other.ToJsonString()} must be \"chain\" or {{\"manifold\": \"DIR\"}}"),
    };

    private static TaumodeConfig ParseTaumodeConfig(JsonObject o)
    {
        var defaults = new TaumodeConfig();
        return new TaumodeConfig(
            Mode: GetString(o, "mode", "taumode.") is { } m ? ParseTaumode(m, "config.json: taumode.mode") : null,
            Tau: GetDouble(o, "tau", "taumode.") ?? defaults.Tau,
            Eps: GetDouble(o, "eps", "taumode.") ?? defaults.Eps,
            Temperature: GetDouble(o, "temperature", "taumode.") ?? defaults.Temperature,
            Percentile: GetDouble(o, "percentile", "taumode.") ?? defaults.Percentile,
            LambdaBeforeRope: o["lambda_before_rope"] switch
            {
                null => false,
                JsonValue v when v.TryGetValue<bool>(out bool before) => before,
                var other => throw new ModelFormatException($"config.json: taumode.lambda_before_rope = {other.ToJsonString()} must be true or false"),
            },
            Recency: GetString(o, "recency", "taumode.") switch
            {
                null or "none" => TauRecency.None,
                "alibi" => TauRecency.Alibi,
                var other => throw new ModelFormatException($"config.json: taumode.recency = \"{other}\" must be \"none\" or \"alibi\""),
            },
            LearnedTemperature: o["learned_temperature"] switch
            {
                null => false,
                JsonValue v when v.TryGetValue<bool>(out bool learned) => learned,
                var other => throw new ModelFormatException($"config.json: taumode.learned_temperature = {other.ToJsonString()} must be true or false"),
            },
            ProjectionDim: GetInt(o, "projection_dim", required: false) ?? 0);
    }

    public static TaumodeKind ParseTaumode(string text, string where) => text.ToLowerInvariant() switch
    {
        "fixed" => TaumodeKind.Fixed,
        "median" => TaumodeKind.Median,
        "mean" => TaumodeKind.Mean,
        "percentile" => TaumodeKind.Percentile,
        _ => throw new ModelFormatException($"{where} = \"{text}\" must be fixed, median, mean or percentile"),
    };

    private static int? GetInt(JsonObject o, string name, bool required)
    {
        var node = o[name];
        if (node is null)
            return required ? throw new ModelFormatException($"config.json: required field {name} is missing") : null;
        if (node is JsonValue v && v.TryGetValue<double>(out var d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue)
            return (int)d;
        throw new ModelFormatException($"config.json: {name} = {node.ToJsonString()} must be an integer");
    }

    private static double? GetDouble(JsonObject o, string name, string prefix = "")
    {
        var node = o[name];
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue<double>(out var d)) return d;
        throw new ModelFormatException($"config.json: {prefix}{name} = {node.ToJsonString()} must be a number");
    }

    private static string? GetString(JsonObject o, string name, string prefix = "")
    {
        var node = o[name];
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue<string>(out var s)) return s;
        throw new ModelFormatException($"config.json: {prefix}{name} = {node.ToJsonString()} must be a string");
    }

    public string ToJson()
    {
        var t = TaumodeOrDefault;
        var taumode = new JsonObject
        {
            ["tau"] = t.Tau, ["eps"] = t.Eps, ["temperature"] = t.Temperature, ["percentile"] = t.Percentile,
        };
        if (t.Mode is { } mode) taumode["mode"] = mode.ToString().ToLowerInvariant();
        // Written only when on, so that a config of the seed's attention stays what it was.
        if (t.LambdaBeforeRope) taumode["lambda_before_rope"] = true;
        if (t.Recency != TauRecency.None) taumode["recency"] = t.Recency.ToString().ToLowerInvariant();
        if (t.LearnedTemperature) taumode["learned_temperature"] = true;
        if (t.ProjectionDim > 0) taumode["projection_dim"] = t.ProjectionDim;
        var root = new JsonObject
        {
            ["vocab_size"] = VocabSize, ["n_layer"] = NLayer, ["n_head"] = NHead, ["n_kv_head"] = NKvHead,
            ["n_embd"] = NEmbd, ["sequence_len"] = SequenceLen, ["rope_base"] = RopeBase, ["softcap"] = Softcap,
            ["attention"] = Attention == AttentionKind.Tau ? "tau" : "causal",
            ["laplacian"] = ManifoldDirectory is null ? JsonValue.Create("chain") : new JsonObject { ["manifold"] = ManifoldDirectory },
            ["taumode"] = taumode,
        };
        if (Tokenizer is not null) root["tokenizer"] = Tokenizer;
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
