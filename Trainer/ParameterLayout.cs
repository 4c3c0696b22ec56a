using TauCluster.Engine;

namespace TauCluster.Training;

/// <summary>
/// One weight matrix [Rows, Cols] (PyTorch's [out, in]) at <see cref="Offset"/> in the flat parameter array; a vector is
/// [Rows, 1] here and keeps its one-dimensional <see cref="Shape"/> in the file.
/// </summary>
public sealed record ParameterTensor(string Name, int Rows, int Cols, int Offset)
{
    public int Length => Rows * Cols;
    public int[] Shape { get; init; } = [Rows, Cols];
}

/// <summary>
/// The linear layers of one block; <see cref="Qkv"/> is c_q, c_k and c_v together (they are adjacent, all [·, C]); the λ
/// weights where the config has them (<see cref="LambdaHeads"/>).
/// </summary>
public sealed record LayerParameters(ParameterTensor Qkv, ParameterTensor AttentionProjection, ParameterTensor MlpUp, ParameterTensor MlpDown,
    ParameterTensor? LambdaLogGain = null, ParameterTensor? LambdaQueryProjection = null, ParameterTensor? LambdaKeyProjection = null);

/// <summary>
/// Every weight of a model in one flat array, in the order and shapes of DESIGN.md §2 (<see cref="ModelWeights.Layout"/>),
/// so that gradients, optimizer moments and checkpoints are all the same layout.
/// </summary>
public sealed class ParameterLayout
{
    public ParameterLayout(ModelConfig config)
    {
        Config = config.Validate();
        var tensors = new List<ParameterTensor>();
        long offset = 0;
        foreach (var (name, shape) in ModelWeights.Layout(config))
        {
            int cols = shape.Length > 1 ? shape[1] : 1;
            tensors.Add(new ParameterTensor(name, shape[0], cols, checked((int)offset)) { Shape = shape });
            offset += (long)shape[0] * cols;
        }
        if (offset > Array.MaxLength) throw new InvalidTrainingOptionsException($"the model has {offset} parameters, more than one array holds");
        Tensors = tensors;
        Count = (int)offset;
        var byName = tensors.ToDictionary(t => t.Name);
        Embedding = byName["transformer.wte.weight"];
        LmHead = byName["lm_head.weight"];
        Layers = Enumerable.Range(0, config.NLayer).Select(i =>
        {
            ParameterTensor T(string part) => byName[$"transformer.h.{i}.{part}.weight"];
            var (q, k, v) = (T("attn.c_q"), T("attn.c_k"), T("attn.c_v"));
            if (k.Offset != q.Offset + q.Length || v.Offset != k.Offset + k.Length)
                throw new InvalidOperationException("c_q, c_k and c_v must be adjacent in the layout");
            var qkv = new ParameterTensor($"transformer.h.{i}.attn.c_qkv", q.Rows + k.Rows + v.Rows, config.NEmbd, q.Offset);
            return new LayerParameters(qkv, T("attn.c_proj"), T("mlp.c_fc"), T("mlp.c_proj"),
                byName.GetValueOrDefault(ModelWeights.LambdaLogGainName(i)),
                byName.GetValueOrDefault(ModelWeights.LambdaProjectionName(i, query: true)),
                byName.GetValueOrDefault(ModelWeights.LambdaProjectionName(i, query: false)));
        }).ToArray();
    }

    public ModelConfig Config { get; }
    public IReadOnlyList<ParameterTensor> Tensors { get; }
    public int Count { get; }
    public ParameterTensor Embedding { get; }
    public ParameterTensor LmHead { get; }
    public IReadOnlyList<LayerParameters> Layers { get; }

    /// <summary>The matrices a forward pass multiplies by (everything but the embedding).</summary>
    public IEnumerable<ParameterTensor> LinearLayers => Layers.SelectMany(l => new[] { l.Qkv, l.AttentionProjection, l.MlpUp, l.MlpDown }).Append(LmHead);

    /// <summary>The Engine's weights: one array per tensor, copied out of the flat parameters.</summary>
    public ModelWeights ToWeights(ReadOnlySpan<float> parameters)
    {
        var copies = new Dictionary<string, Tensor>();
        foreach (var t in Tensors) copies[t.Name] = new Tensor(t.Name, t.Shape, parameters.Slice(t.Offset, t.Length).ToArray());
        return ModelWeights.FromTensors(Config, copies, "training parameters");
    }

    /// <summary>Copies the Engine's weights into the flat layout.</summary>
    public void CopyFrom(ModelWeights weights, Span<float> parameters)
    {
        foreach (var tensor in weights.ToTensors(Config))
            tensor.Data.CopyTo(parameters.Slice(Tensors.First(t => t.Name == tensor.Name).Offset));
    }
}
