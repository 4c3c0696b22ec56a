using System.Numerics.Tensors;

namespace TauCluster.Engine;

/// <summary>
/// The weights of one transformer block, each [out, in] row-major as PyTorch stores them; the λ weights only where the
/// config asks for them (<see cref="ModelConfig.HasLambdaWeights"/>): a log-gain per kv head [Hkv], and the query and key
/// projections [F, D].
/// </summary>
public sealed record LayerWeights(float[] Query, float[] Key, float[] Value, float[] AttentionProjection, float[] MlpUp, float[] MlpDown,
    float[]? LambdaLogGain = null, float[]? LambdaQueryProjection = null, float[]? LambdaKeyProjection = null);

/// <summary>
/// All weights of a model, loaded once and shared read-only by every session that runs it.
/// </summary>
public sealed class ModelWeights
{
    public required float[] TokenEmbedding { get; init; }
    public required LayerWeights[] Layers { get; init; }
    public required float[] LmHead { get; init; }

    /// <summary>
    /// The type every weight is a value of (each F32 here is the exact widening of one): what the file stores, and what
    /// the packed panels hold, so that a 16-bit model's products read half the bytes.
    /// </summary>
    public TensorDType WeightType { get; init; } = TensorDType.F32;

    private ModelMatrices<PackedMatrix>? packed;

    /// <summary>
    /// The products' weights repacked for the GEMM kernels, built on first use and then shared by every model built on
    /// these weights (the bench builds one per attention kind). The row-major arrays stay: they are what is saved and trained.
    /// </summary>
    internal ModelMatrices<PackedMatrix> Packed(ModelConfig config) =>
        packed ?? Interlocked.CompareExchange(ref packed, PackedWeights.Of(this, config), null) ?? packed;

    /// <summary>The tensor names and [out, in] shapes that DESIGN.md §2 requires for a config.</summary>
    public static IEnumerable<(string Name, int[] Shape)> Layout(ModelConfig c)
    {
        yield return ("transformer.wte.weight", [c.VocabSize, c.NEmbd]);
        for (int i = 0; i < c.NLayer; i++)
        {
            yield return ($"transformer.h.{i}.attn.c_q.weight", [c.NHead * c.HeadDim, c.NEmbd]);
            yield return ($"transformer.h.{i}.attn.c_k.weight", [c.KvDim, c.NEmbd]);
            yield return ($"transformer.h.{i}.attn.c_v.weight", [c.KvDim, c.NEmbd]);
            yield return ($"transformer.h.{i}.attn.c_proj.weight", [c.NEmbd, c.NEmbd]);
            yield return ($"transformer.h.{i}.mlp.c_fc.weight", [c.MlpDim, c.NEmbd]);
            yield return ($"transformer.h.{i}.mlp.c_proj.weight", [c.NEmbd, c.MlpDim]);
            if (c.Attention != AttentionKind.Tau) continue;
            if (c.TaumodeOrDefault.LearnedTemperature) yield return (LambdaLogGainName(i), [c.NKvHead]);
            if (c.TaumodeOrDefault.ProjectionDim is > 0 and var f)
            {
                yield return (LambdaProjectionName(i, query: true), [f, c.HeadDim]);
                yield return (LambdaProjectionName(i, query: false), [f, c.HeadDim]);
            }
        }
        yield return ("lm_head.weight", [c.VocabSize, c.NEmbd]);
    }

    public static string LambdaLogGainName(int layer) => $"transformer.h.{layer}.attn.lambda_log_gain";

    public static string LambdaProjectionName(int layer, bool query) => $"transformer.h.{layer}.attn.lambda_{(query ? "q" : "k")}_proj.weight";

    /// <summary>
    /// Checks names and shapes against the config; a missing or mis-shaped tensor is an error naming it. The weights
    /// must be finite, and keep their stored type when every tensor has the same one, and are F32 (which holds them all exactly) otherwise.
    /// </summary>
    public static ModelWeights FromTensors(ModelConfig config, IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        float[] Take(string name, int[] shape)
        {
            if (!tensors.TryGetValue(name, out var t))
                throw new ModelFormatException($"{source}: missing tensor {name} (expected shape [{string.Join(", ", shape)}])");
            if (!t.Shape.SequenceEqual(shape))
                throw new ModelFormatException($"{source}: tensor {name} has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", shape)}]");
            if (!TensorPrimitives.IsFiniteAll<float>(t.Data))
                throw new ModelFormatException($"{source}: tensor {name} holds a value that is not finite (an infinity or NaN)");
            return t.Data;
        }

        var layout = Layout(config).ToDictionary(e => e.Name, e => e.Shape);
        var types = layout.Keys.Select(name => tensors.TryGetValue(name, out var t) ? t.DType : TensorDType.F32).Distinct().ToArray();
        string L(int i, string part) => $"transformer.h.{i}.{part}.weight";
        float[]? Optional(string name) => layout.TryGetValue(name, out var shape) ? Take(name, shape) : null;
        return new ModelWeights
        {
            TokenEmbedding = Take("transformer.wte.weight", layout["transformer.wte.weight"]),
            Layers = Enumerable.Range(0, config.NLayer).Select(i => new LayerWeights(
                Take(L(i, "attn.c_q"), layout[L(i, "attn.c_q")]),
                Take(L(i, "attn.c_k"), layout[L(i, "attn.c_k")]),
                Take(L(i, "attn.c_v"), layout[L(i, "attn.c_v")]),
                Take(L(i, "attn.c_proj"), layout[L(i, "attn.c_proj")]),
                Take(L(i, "mlp.c_fc"), layout[L(i, "mlp.c_fc")]),
                Take(L(i, "mlp.c_proj"), layout[L(i, "mlp.c_proj")]),
                Optional(LambdaLogGainName(i)),
                Optional(LambdaProjectionName(i, query: true)),
                Optional(LambdaProjectionName(i, query: false)))).ToArray(),
            LmHead = Take("lm_head.weight", layout["lm_head.weight"]),
            WeightType = types.Length == 1 ? types[0] : TensorDType.F32,
        };
    }

    public IEnumerable<Tensor> ToTensors(ModelConfig config)
    {
        var byName = new Dictionary<string, float[]>
        {
            ["transformer.wte.weight"] = TokenEmbedding,
            ["lm_head.weight"] = LmHead,
        };
        for (int i = 0; i < Layers.Length; i++)
        {
            var l = Layers[i];
            byName[$"transformer.h.{i}.attn.c_q.weight"] = l.Query;
            byName[$"transformer.h.{i}.attn.c_k.weight"] = l.Key;
            byName[$"transformer.h.{i}.attn.c_v.weight"] = l.Value;
            byName[$"transformer.h.{i}.attn.c_proj.weight"] = l.AttentionProjection;
            byName[$"transformer.h.{i}.mlp.c_fc.weight"] = l.MlpUp;
            byName[$"transformer.h.{i}.mlp.c_proj.weight"] = l.MlpDown;
            if (l.LambdaLogGain is { } gain) byName[LambdaLogGainName(i)] = gain;
            if (l.LambdaQueryProjection is { } q) byName[LambdaProjectionName(i, query: true)] = q;
            if (l.LambdaKeyProjection is { } k) byName[LambdaProjectionName(i, query: false)] = k;
        }
        return Layout(config).Select(e => new Tensor(e.Name, e.Shape, byName[e.Name], WeightType));
    }

    /// <summary>
    /// Seeded Gaussian weights for any config: N(0, 1) embeddings, N(0, 1/in) linear layers and λ projections, N(0, 1/4)
    /// λ log-gains (temperatures within about e^±1 of the config's), so that
    /// benchmarks and tests can make models of any shape, and the same seed always gives the same model. A 16-bit
    /// <paramref name="type"/> rounds the same draws to nearest.
    /// </summary>
    public static ModelWeights CreateRandom(ModelConfig config, ulong seed, TensorDType type = TensorDType.F32)
    {
        var rng = new Xoshiro256(seed);
        float[] Gaussian(int outDim, int inDim, double std)
        {
            var w = new float[(long)outDim * inDim];
            for (int i = 0; i < w.Length; i++) w[i] = type.Round((float)(rng.NextGaussian() * std));
            return w;
        }
        int c = config.NEmbd, f = config.TaumodeOrDefault.ProjectionDim;
        double linear = 1.0 / Math.Sqrt(c);
        bool tau = config.Attention == AttentionKind.Tau;
        return new ModelWeights
        {
            TokenEmbedding = Gaussian(config.VocabSize, c, 1.0),
            Layers = Enumerable.Range(0, config.NLayer).Select(_ => new LayerWeights(
                Gaussian(config.NHead * config.HeadDim, c, linear),
                Gaussian(config.KvDim, c, linear),
                Gaussian(config.KvDim, c, linear),
                Gaussian(c, c, linear),
                Gaussian(config.MlpDim, c, linear),
                Gaussian(c, config.MlpDim, 1.0 / Math.Sqrt(config.MlpDim)),
                tau && config.TaumodeOrDefault.LearnedTemperature ? Gaussian(config.NKvHead, 1, 0.5) : null,
                tau && f > 0 ? Gaussian(f, config.HeadDim, 1.0 / Math.Sqrt(config.HeadDim)) : null,
                tau && f > 0 ? Gaussian(f, config.HeadDim, 1.0 / Math.Sqrt(config.HeadDim)) : null)).ToArray(),
            LmHead = Gaussian(config.VocabSize, c, linear),
            WeightType = type,
        };
    }
}
