namespace TauCluster.Engine;

/// <summary>
/// A loaded model: config, weights (one shared read-only copy), its own Laplacian and tokenizer.
/// Immutable, so every session on a silo runs the same instance.
/// </summary>
public sealed partial class TauModel
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";

    private TauModel(ModelConfig config, ModelWeights weights, Laplacian? laplacian, string? directory)
    {
        Config = config.Validate();
        Weights = weights;
        Packed = weights.Packed(Config);
        Directory = directory;
        Tokenizer = TextTokenizer.For(config.Tokenizer);
        RopeDivisors = Kernels.RopeDivisors(config.HeadDim, config.RopeBase);
        lambdaHeads = LambdaHeads.Of(Config, weights);
        if (config.Attention == AttentionKind.Tau)
        {
            laplacian ??= Laplacian.Chain(config.LambdaDim);
            DefaultDomain = DomainFor(laplacian);
        }
    }

    private readonly LambdaHeads? lambdaHeads;

    public ModelConfig Config { get; }
    public ModelWeights Weights { get; }
    public string? Directory { get; }
    public ITextTokenizer? Tokenizer { get; }

    /// <summary>The model's own Laplacian and taumode settings; null for dot-product models.</summary>
    public TaumodeSpec? DefaultDomain { get; }

    internal double[] RopeDivisors { get; }

    internal ModelMatrices<PackedMatrix> Packed { get; }

    public static TauModel Create(ModelConfig config, ModelWeights weights, Laplacian? laplacian = null) =>
        new(config, weights, laplacian, null);

    /// <summary>
    /// This model's weights and Laplacian under <paramref name="attention"/>, with room for at least
    /// <paramref name="sequenceLen"/> positions: what the benchmarks time (the variant shares the packed weights).
    /// </summary>
    public TauModel Variant(AttentionKind attention, int sequenceLen) =>
        Create(Config with { Attention = attention, SequenceLen = Math.Max(Config.SequenceLen, sequenceLen) }, Weights, DefaultDomain?.Laplacian);

    /// <summary>Scores this model's attention against another domain's Laplacian (of the dimension λ is taken in, <see cref="ModelConfig.LambdaDim"/>).</summary>
    public TaumodeSpec DomainFor(Laplacian laplacian)
    {
        laplacian.RequireDimension(Config.LambdaDim, Config.TaumodeOrDefault.ProjectionDim > 0
            ? "a model with a λ projection" : $"a model with n_embd {Config.NEmbd} and n_head {Config.NHead}");
        return Config.TaumodeOrDefault.Resolve(laplacian) with { Heads = lambdaHeads };
    }

    /// <summary>Loads config.json, model.safetensors and, when the config names one, the manifold directory.</summary>
    public static TauModel Load(string directory)
    {
        if (!System.IO.Directory.Exists(directory)) throw new ModelFormatException($"model directory not found: {directory}");
        var config = ModelConfig.Load(Path.Combine(directory, ConfigFile));
        var weightsPath = Path.Combine(directory, WeightsFile);
        var weights = ModelWeights.FromTensors(config, SafeTensors.Read(weightsPath), weightsPath);
        Laplacian? laplacian = null;
        if (config.ManifoldDirectory is { } manifold)
        {
            var root = Path.GetFullPath(directory);
            var full = Path.GetFullPath(Path.Combine(root, manifold));
            if (!full.StartsWith(root.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                throw new ModelFormatException($"config.json: laplacian.manifold = \"{manifold}\" must stay inside the model directory");
            laplacian = Manifold.Load(full);
        }
        return new TauModel(config, weights, laplacian, directory);
    }

    /// <summary>Writes config.json, model.safetensors (in the weights' type unless <paramref name="dtypeOf"/> says otherwise) and the manifold (when the model has one).</summary>
    public void Save(string directory, Func<string, TensorDType>? dtypeOf = null)
    {
        System.IO.Directory.CreateDirectory(directory);
        var config = Config;
        if (DefaultDomain?.Laplacian is { Name: not "chain" } laplacian)
        {
            config = config with { ManifoldDirectory = config.ManifoldDirectory ?? "manifold" };
            Manifold.WriteAsync(Path.Combine(directory, config.ManifoldDirectory!), laplacian, DefaultDomain.Settings.Mode).GetAwaiter().GetResult();
        }
        File.WriteAllText(Path.Combine(directory, ConfigFile), config.ToJson());
        SafeTensors.Write(Path.Combine(directory, WeightsFile), Weights.ToTensors(Config), dtypeOf);
    }

    /// <summary>A model of seeded random weights of a type for any config (what <c>tau model init</c> writes).</summary>
    public static TauModel CreateRandom(ModelConfig config, ulong seed, Laplacian? laplacian = null, TensorDType type = TensorDType.F32) =>
        Create(config.Validate(), ModelWeights.CreateRandom(config, seed, type), laplacian);
}
