namespace TauCluster.Engine;

/// <summary>The activations of a forward pass, [rows, width] each; every backend keeps its own.</summary>
internal enum Activation { X, H, Q, K, V, Y, Out, Up }

/// <summary>The weight matrices of a layer, and the language-model head.</summary>
internal enum Projection { Query, Key, Value, AttentionProjection, MlpUp, MlpDown, LmHead }

/// <summary>One transformer block's six weight matrices, as a device holds them; a projection names one.</summary>
internal sealed record LayerMatrices<T>(T Query, T Key, T Value, T AttentionProjection, T MlpUp, T MlpDown)
{
    public T this[Projection p] => p switch
    {
        Projection.Query => Query,
        Projection.Key => Key,
        Projection.Value => Value,
        Projection.AttentionProjection => AttentionProjection,
        Projection.MlpUp => MlpUp,
        Projection.MlpDown => MlpDown,
        _ => throw new ArgumentOutOfRangeException(nameof(p), p, "not a layer's matrix"),
    };

    public IEnumerable<T> All => [Query, Key, Value, AttentionProjection, MlpUp, MlpDown];
}

/// <summary>A model's weight matrices for its products: every layer's and the language-model head.</summary>
internal sealed record ModelMatrices<T>(LayerMatrices<T>[] Layers, T LmHead)
{
    public T Of(Projection p, int layer) => p == Projection.LmHead ? LmHead : Layers[layer][p];

    public IEnumerable<T> All => Layers.SelectMany(l => l.All).Append(LmHead);
}

/// <summary>What a matrix product does to its outputs as it writes them (DESIGN.md §1).</summary>
internal enum Epilogue
{
    None,
    /// <summary>clamp(·, −5, 5): q, k and v.</summary>
    ClampQkv,
    /// <summary>relu(·)²: the MLP's hidden layer.</summary>
    ReluSquared,
    /// <summary>clamp(·, −50, 50), then the optional softcap and the clamp again.</summary>
    Logits,
}

/// <summary>
/// The steps of <see cref="TauModel.Forward"/> on the device that runs them: the SIMD kernels on the CPU
/// (<see cref="ForwardBuffers"/>) or ILGPU kernels on a GPU (<see cref="DevicePass"/>). The pass is written once, in
/// these steps; each backend holds the activations, the weights and the lanes' caches where its kernels read them.
/// </summary>
internal interface IForwardKernels
{
    /// <summary>Sets the pass's lanes and x = wte[token] for each row (no norm after the embedding).</summary>
    void Begin(ReadOnlySpan<int> tokens, ReadOnlySpan<Lane> lanes);

    /// <summary>to[t] = rms(from[t]) for each of the pass's rows.</summary>
    void RmsNorm(Activation from, Activation to);

    /// <summary>to[t] = then(W · from[t]) for each of the pass's rows.</summary>
    void Project(Projection weights, int layer, Activation from, Activation to, Epilogue then);

    /// <summary>q, k = rms(rope(·, pos)) per head vector, v gets neither; then the keys (λk for tau) and values into each lane's cache.</summary>
    void CacheKeys(int layer);

    /// <summary>Y[t, h] = Σⱼ softmax(score)ⱼ vⱼ over the keys of row t's session at positions ≤ its own.</summary>
    void Attend(int layer);

    /// <summary>X += from, the residual stream.</summary>
    void AddToResidual(Activation from);

    /// <summary>logits = then(Wlm · rms(x)) of each lane's last row, or of every row, into <see cref="Logits"/>; ends the pass.</summary>
    void FinishLogits(bool everyRow);

    /// <summary>The logits of the last pass on the host, [rows, vocab], where sampling reads them.</summary>
    float[] Logits { get; }
}
