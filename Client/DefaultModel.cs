using TauCluster.Engine;

namespace TauCluster.Client;

/// <summary>
/// The model that <c>tau generate</c> runs when none is named: the paper's bench shape with seeded random
/// weights, the GPT-2 tokenizer and the chain Laplacian, written on first use. Its text is noise: no trained
/// Tauformer exists yet.
/// </summary>
public static class DefaultModel
{
    public const string Name = "default";
    public const ulong Seed = 20260101;

    public static ModelConfig Config { get; } = new(
        VocabSize: 50257, NLayer: 6, NHead: 1, NKvHead: 1, NEmbd: 384, SequenceLen: 4096, RopeBase: 10000, Softcap: 15,
        Attention: AttentionKind.Tau, Taumode: new TaumodeConfig(Mode: TauModeKind.Median), Tokenizer: "gpt2");

    public static string Directory => Path.Combine(ModelResolver.HomeDirectory, "models", Name);

    /// <summary>Loads the default model, creating it first if this machine has none.</summary>
    public static TauModel LoadOrCreate(Action<string>? progress = null)
    {
        var dir = Directory;
        if (!File.Exists(Path.Combine(dir, TauModel.WeightsFile)))
        {
            progress?.Invoke($"creating the default model in {dir} (seeded random weights, once) …");
            var staging = dir + ".tmp-" + Environment.ProcessId;
            TauModel.CreateRandom(Config, Seed).Save(staging);
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(dir)!);
            try { System.IO.Directory.Move(staging, dir); }
            catch (IOException) when (File.Exists(Path.Combine(dir, TauModel.WeightsFile))) { System.IO.Directory.Delete(staging, true); }   // another process won the race
        }
        return TauModel.Load(dir);
    }
}

/// <summary>Resolves the names a user gives (models, domains) to directories.</summary>
public static class ModelResolver
{
    /// <summary>TAU_HOME, else ~/.cache/taucluster: where the default model and named models live.</summary>
    public static string HomeDirectory =>
        Environment.GetEnvironmentVariable("TAU_HOME") is { Length: > 0 } home ? home
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "taucluster");

    public static TauModel Model(string? nameOrDirectory, Action<string>? progress)
    {
        if (nameOrDirectory is null or DefaultModel.Name) return DefaultModel.LoadOrCreate(progress);
        if (System.IO.Directory.Exists(nameOrDirectory)) return TauModel.Load(nameOrDirectory);
        var named = Path.Combine(HomeDirectory, "models", nameOrDirectory);
        if (IsPlainName(nameOrDirectory) && System.IO.Directory.Exists(named)) return TauModel.Load(named);
        throw new TauException($"unknown model '{nameOrDirectory}': not a model directory, nor a name under {Path.Combine(HomeDirectory, "models")}");
    }

    public static Laplacian Domain(string nameOrDirectory)
    {
        if (System.IO.Directory.Exists(nameOrDirectory)) return Manifold.Load(nameOrDirectory);
        var named = Path.Combine(HomeDirectory, "manifolds", nameOrDirectory);
        if (IsPlainName(nameOrDirectory) && System.IO.Directory.Exists(named)) return Manifold.Load(named);
        throw new TauException($"unknown domain '{nameOrDirectory}': not a manifold directory, nor a name under {Path.Combine(HomeDirectory, "manifolds")}");
    }

    private static bool IsPlainName(string name) => name.Length > 0 && name.IndexOfAny(['/', '\\']) < 0 && name is not "." and not "..";
}
