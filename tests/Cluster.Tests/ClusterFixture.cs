using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using TauCluster.Engine;
using TauCluster.Grains;

namespace TauCluster.Cluster.Tests;

/// <summary>Small models and manifolds written to a temporary folder, shared by the cluster tests.</summary>
public sealed class TestWorld : IDisposable
{
    public const string Tiny = "tiny";              // tau, bytes tokenizer, GQA, head dimension 32
    public const string TinyCausal = "tiny-causal";
    public const string Tiny384 = "tiny-384";       // one head of 384: the real manifold's dimension
    public const string Long = "long";              // tau, 128K context, head dimension 16: sessions that need context shards
    public const string LongCausal = "long-causal"; // causal (K, V), 128K context, one layer and head of 8: cheap past a segment
    public const string LongRecency = "long-recency"; // tau with ALiBi's recency bias, 128K context, one layer: its shards need positions
    public const string Chain32 = "chain32";        // a manifold under the manifolds root, dimension 32
    public const string RealDomain = TestPaths.RealManifoldName;

    public TestWorld()
    {
        Root = Path.Combine(Path.GetTempPath(), "tau-cluster-tests", Guid.NewGuid().ToString("N"));
        var models = Path.Combine(Root, "models");
        var manifolds = Path.Combine(Root, "manifolds");
        var tiny = new ModelConfig(VocabSize: 256, NLayer: 2, NHead: 2, NKvHead: 1, NEmbd: 64, SequenceLen: 4096, Softcap: 15,
            Attention: AttentionKind.Tau, Taumode: new TaumodeConfig(Mode: TaumodeKind.Median, Temperature: 0.05), Tokenizer: "bytes");
        TauModel.CreateRandom(tiny, 1).Save(Path.Combine(models, Tiny));
        TauModel.CreateRandom(tiny with { Attention = AttentionKind.Causal }, 2).Save(Path.Combine(models, TinyCausal));
        TauModel.CreateRandom(tiny with { NHead = 1, NKvHead = 1, NEmbd = 384, NLayer = 1, Taumode = new TaumodeConfig() }, 3).Save(Path.Combine(models, Tiny384));
        TauModel.CreateRandom(tiny with { NEmbd = 32, SequenceLen = 1 << 17 }, 4).Save(Path.Combine(models, Long));
        TauModel.CreateRandom(tiny with { NLayer = 1, NHead = 1, NEmbd = 8, SequenceLen = 1 << 17, Attention = AttentionKind.Causal }, 5).Save(Path.Combine(models, LongCausal));
        TauModel.CreateRandom(tiny with { NLayer = 1, NEmbd = 32, SequenceLen = 1 << 17, Taumode = tiny.Taumode! with { Recency = TauRecency.Alibi } }, 6)
            .Save(Path.Combine(models, LongRecency));
        Manifold.WriteAsync(Path.Combine(manifolds, Chain32), Laplacian.Chain(32), TaumodeKind.Mean).GetAwaiter().GetResult();

        Options = new TauClusterOptions
        {
            ModelsRoot = models,
            ManifoldsRoot = manifolds,
            DataDirectory = Path.Combine(Root, "data"),
            Storage = "file",
            CheckpointEvery = 4,
        };
        if (TestPaths.RealManifoldDirectory() is { } real) Options.Manifolds[RealDomain] = real;
    }

    public string Root { get; }
    public TauClusterOptions Options { get; }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { }
    }
}

/// <summary>A three-silo TestingHost cluster whose silos share file storage, so state survives a killed silo.</summary>
public sealed class ClusterFixture : IAsyncLifetime
{
    public TestWorld World { get; } = new();
    public InProcessTestCluster Cluster { get; private set; } = null!;
    public IClusterClient Client => Cluster.Client;
    public TauSessionClient Sessions => new(Client);

    private readonly short silos = 3;
    private readonly Func<int, TauClusterOptions, TauClusterOptions>? perSilo;

    public ClusterFixture()
    {
    }

    /// <summary>A cluster of its own size and options (xunit's shared fixture uses the public constructor).</summary>
    internal ClusterFixture(short silos, Action<TauClusterOptions> configure, Func<int, TauClusterOptions, TauClusterOptions>? perSilo = null)
    {
        this.silos = silos;
        this.perSilo = perSilo;
        configure(World.Options);
    }

    public async Task InitializeAsync()
    {
        var builder = new InProcessTestClusterBuilder(silos);
        int configured = 0;   // silos are configured one after another, in the order they start
        builder.ConfigureSilo((_, silo) => silo.AddTauServices(perSilo?.Invoke(configured++, World.Options) ?? World.Options));
        builder.ConfigureClient(client => client.AddTauClient());
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.DisposeAsync();
        World.Dispose();
    }

    public T SiloService<T>(string siloAddress) where T : notnull =>
        Cluster.Silos.Single(s => s.SiloAddress.ToString() == siloAddress).ServiceProvider.GetRequiredService<T>();
}

[CollectionDefinition(nameof(ClusterCollection))]
public sealed class ClusterCollection : ICollectionFixture<ClusterFixture>;
