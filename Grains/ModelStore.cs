using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TauCluster.Engine;

namespace TauCluster.Grains;

/// <summary>
/// The silo's models, each loaded once on first use and shared read-only by every session on the silo.
/// </summary>
public sealed class ModelStore(IOptions<TauClusterOptions> options, ILogger<ModelStore> logger)
{
    public const string DefaultName = "default";
    public const string PaperName = "paper";
    private readonly ConcurrentDictionary<string, Lazy<TauModel>> loaded = new(StringComparer.Ordinal);
    private TauClusterOptions Options => options.Value;

    /// <summary>Every model a request may name: the built-in ones, the configured ones and the models root's folders.</summary>
    public IReadOnlyList<string> Names()
    {
        var names = new SortedSet<string>(StringComparer.Ordinal) { DefaultName, PaperName };
        if (Directory.Exists(DefaultModel.CausalDirectory)) names.Add(DefaultModel.CausalName);
        names.UnionWith(Options.Models.Keys);
        if (Options.ModelsRoot is { } root && Directory.Exists(root))
            foreach (var dir in Directory.EnumerateDirectories(root))
                if (File.Exists(Path.Combine(dir, TauModel.ConfigFile)) && Grains.Names.IsValid(Path.GetFileName(dir)))
                    names.Add(Path.GetFileName(dir));
        return names.ToList();
    }

    /// <summary>Refuses a name that is not a model here, without loading it (a front end checks before it starts a request).</summary>
    public string Require(string name)
    {
        Grains.Names.Require("model", name);
        var names = Names();
        return names.Contains(name, StringComparer.Ordinal) ? name
            : throw new UnknownNameException("model", name, $"known models: {string.Join(", ", names)}");
    }

    public TauModel Get(string name)
    {
        Grains.Names.Require("model", name);
        var lazy = loaded.GetOrAdd(name, n => new Lazy<TauModel>(() => Load(n), LazyThreadSafetyMode.ExecutionAndPublication));
        try
        {
            return lazy.Value;
        }
        catch
        {
            loaded.TryRemove(new KeyValuePair<string, Lazy<TauModel>>(name, lazy));   // a failed load is retried next time
            throw;
        }
    }

    /// <summary>
    /// What /v1/models says of a model without loading its weights: when its files were written (the silo's start for
    /// the paper model before it is made) and its config, the context length in it.
    /// </summary>
    public ModelCard Describe(string name)
    {
        Require(name);
        var config = Path.Combine(DirectoryOf(name)!, TauModel.ConfigFile);
        if (name == PaperName && !File.Exists(config)) return new ModelCard(name, started, PaperModel.Config);
        return new ModelCard(name, new DateTimeOffset(File.GetLastWriteTimeUtc(config)).ToUnixTimeSeconds(), ModelConfig.Load(config));
    }

    private readonly long started = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>Where a model's files are: configured by name, in the models root, or built in; null for no such model.</summary>
    private string? DirectoryOf(string name) =>
        Options.Models.TryGetValue(name, out var configured) ? configured
        : Grains.Names.InsideRoot(Options.ModelsRoot, name) is { } dir ? dir
        : name == DefaultName ? DefaultModel.Directory
        : name == DefaultModel.CausalName && System.IO.Directory.Exists(DefaultModel.CausalDirectory) ? DefaultModel.CausalDirectory
        : name == PaperName ? PaperModel.DirectoryIn(Options.DataDirectory)
        : null;

    private TauModel Load(string name)
    {
        var dir = DirectoryOf(name) ?? throw new UnknownNameException("model", name, $"known models: {string.Join(", ", Names())}");
        if (name == PaperName && dir == PaperModel.DirectoryIn(Options.DataDirectory))
            return PaperModel.LoadOrCreate(Options.DataDirectory, message => logger.LogInformation("{Message}", message));
        logger.LogInformation("Loading model {Model} from {Directory}", name, dir);
        return TauModel.Load(dir);
    }
}

/// <summary>A model as the API lists it: its name, when it was made (Unix seconds) and its config.</summary>
public sealed record ModelCard(string Name, long Created, ModelConfig Config);

/// <summary>
/// The model served when none is named: a byte-level Tauformer trained on the King James Bible by <c>tau train</c>,
/// on a manifold built by <c>tau manifold build</c> (MODELS.md). It ships with the build, next to the assemblies, with
/// its dot-product twin of the same size, context and budget, served as <see cref="CausalName"/>.
/// </summary>
public static class DefaultModel
{
    public const string CausalName = "kjv-causal";

    public static string Directory => Path.Combine(AppContext.BaseDirectory, "DefaultModel");

    public static string CausalDirectory => Path.Combine(AppContext.BaseDirectory, "KjvCausalModel");
}

/// <summary>
/// The paper's bench shape (6 layers, n_embd 384, one head) with seeded random weights, the GPT-2 tokenizer and the
/// chain Laplacian, written on first use: what the benchmarks time. Its text is noise.
/// </summary>
public static class PaperModel
{
    public const ulong Seed = 20260101;

    public static ModelConfig Config { get; } = new(
        VocabSize: 50257, NLayer: 6, NHead: 1, NKvHead: 1, NEmbd: 384, SequenceLen: 4096, RopeBase: 10000, Softcap: 15,
        Attention: AttentionKind.Tau, Taumode: new TaumodeConfig(Mode: TaumodeKind.Median), Tokenizer: "gpt2");

    public static string DirectoryIn(string dataDirectory) => Path.Combine(dataDirectory, "models", ModelStore.PaperName);

    public static TauModel LoadOrCreate(string dataDirectory, Action<string>? progress = null) =>
        TauModel.Load(EnsureCreated(dataDirectory, progress));

    /// <summary>Writes the paper model into the data directory unless it is there; returns its directory.</summary>
    public static string EnsureCreated(string dataDirectory, Action<string>? progress = null)
    {
        var dir = DirectoryIn(dataDirectory);
        if (File.Exists(Path.Combine(dir, TauModel.WeightsFile))) return dir;
        progress?.Invoke($"creating the paper-shape model in {dir} (seeded random weights, once)");
        var staging = $"{dir}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        TauModel.CreateRandom(Config, Seed).Save(staging);
        System.IO.Directory.CreateDirectory(Path.GetDirectoryName(dir)!);
        try
        {
            System.IO.Directory.Move(staging, dir);
        }
        catch (IOException) when (File.Exists(Path.Combine(dir, TauModel.WeightsFile)))
        {
            System.IO.Directory.Delete(staging, recursive: true);   // another process made it first
        }
        return dir;
    }
}
