namespace TauCluster.Grains;

/// <summary>
/// The <c>Tau</c> configuration section (appsettings.json, or environment variables such as <c>Tau__Storage=redis</c>).
/// </summary>
public sealed class TauClusterOptions
{
    public const string Section = "Tau";

    /// <summary>A directory whose subdirectories are models, each named after its folder.</summary>
    public string? ModelsRoot { get; set; }

    /// <summary>More models by name → directory (the name "default" is the built-in model unless set here).</summary>
    public Dictionary<string, string> Models { get; set; } = new(StringComparer.Ordinal);

    /// <summary>A directory whose subdirectories are arrowspace manifolds, each a domain named after its folder.</summary>
    public string? ManifoldsRoot { get; set; }

    /// <summary>More domains by name → manifold directory.</summary>
    public Dictionary<string, string> Manifolds { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Where the built-in default model and file storage live; TAU_HOME, else ~/.cache/taucluster.</summary>
    public string DataDirectory { get; set; } = DefaultDataDirectory;

    /// <summary><c>localhost</c> (one silo, or a dev cluster on one machine) or <c>redis</c>.</summary>
    public string Clustering { get; set; } = "localhost";

    /// <summary>Grain storage: <c>memory</c>, <c>file</c> (under DataDirectory/state) or <c>redis</c>.</summary>
    public string Storage { get; set; } = "memory";

    /// <summary>The Redis connection (StackExchange.Redis configuration string) for redis clustering and storage.</summary>
    public string Redis { get; set; } = "127.0.0.1:6379";

    public string ClusterId { get; set; } = "taucluster";
    public string ServiceId { get; set; } = "taucluster";
    public int SiloPort { get; set; } = 11111;
    public int GatewayPort { get; set; } = 30000;

    /// <summary>The address other silos and clients reach this silo at (redis clustering); loopback when unset.</summary>
    public string? AdvertisedAddress { get; set; }

    /// <summary>With localhost clustering: the primary silo's port, for a second silo on the same machine.</summary>
    public int? PrimarySiloPort { get; set; }

    /// <summary>Generated tokens between writes of a session's state; a failover regenerates at most these, identically.</summary>
    public int CheckpointEvery { get; set; } = 16;

    /// <summary>
    /// Bytes of λ/V cache one session keeps on its own silo. Past it, its oldest whole segments
    /// (<see cref="Engine.LambdaIndex.SegmentSize"/> positions each) move to context shards on other silos, as many per
    /// shard as the budget holds. 0 keeps every session whole. Applies to tau models on the λ index.
    /// </summary>
    public long ContextBudgetBytes { get; set; } = 1L << 30;

    /// <summary>
    /// The most decode steps one forward pass of a model's compute worker takes; more sessions wait for the next pass,
    /// in the order they came. Past the size where a pass's tokens per second stop growing, a bigger batch only adds
    /// latency (BENCHMARKS.md has the curve).
    /// </summary>
    public int MaxBatch { get; set; } = 64;

    /// <summary>
    /// Where this silo runs its models' kernels: <c>cpu</c> (the SIMD engine), <c>cuda</c> (the first GPU), <c>cuda:N</c>,
    /// or <c>ilgpu-cpu</c> (ILGPU's CPU accelerator, for tests). A device that is not there stops the silo at start.
    /// Sessions are placed on silos with an accelerator when the cluster has any.
    /// </summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Bytes of each model's cache pool on the device; 0 takes 40% of a GPU's memory (64 MiB on ilgpu-cpu).</summary>
    public long DeviceCacheBytes { get; set; }

    /// <summary>Mutual TLS for silo-to-silo and client-to-gateway connections; off while no certificate is configured.</summary>
    public ClusterTlsOptions Tls { get; set; } = new();

    /// <summary>
    /// Lets a silo with API keys listen beyond loopback (redis clustering) without cluster TLS. Without it, such a silo
    /// refuses to start: the keys would guard the HTTP API while anyone on the network could call its grains directly.
    /// </summary>
    public bool AllowInsecureCluster { get; set; }

    /// <summary>
    /// On SIGTERM, how long running generations may take to finish before the silo leaves the cluster regardless (their
    /// sessions then continue on another silo from their last checkpoint, with the same tokens).
    /// </summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A copy whose changes leave this one as it is (a silo of its own in a test cluster).</summary>
    public TauClusterOptions Clone() => (TauClusterOptions)MemberwiseClone();

    /// <summary>
    /// Whether this silo's silo and gateway ports listen on every interface (redis clustering, a cluster across machines)
    /// rather than loopback only.
    /// </summary>
    public bool ListensBeyondLoopback => Clustering == "redis";

    public static string DefaultDataDirectory =>
        Environment.GetEnvironmentVariable("TAU_HOME") is { Length: > 0 } home ? home
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "taucluster");
}
